"""`edgectl fleet plan`: good rows done, bad rows reported, a re-run resumes; the bundles enrol
a gateway whose config the agent accepts."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from provisioning.fleet import bundle_name
from tests.cloud.helpers import free_port
from tests.provisioning.conftest import Edgectl, edge_agent

CSV = """\
# plant 1 roll-out
device_id,site,area,process,notes
gw-f-01,baotou-1,hall-1,melting,first
gw-f-02,baotou-1,hall-2,casting,

,baotou-1,hall-3,rolling,no id
gw-f-01,baotou-1,hall-4,rolling,duplicate
gw-f-03,baotou-1,hall-5
gw-f-04,baotou-1,{long},x,too long
gw f/05,baotou-1,hall-6,packing,odd name
"""


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.format(long="a" * 129))
    return path


def bundles(out: Path) -> dict[str, Path]:
    return {json.loads((p / "bundle.json").read_text())["device_id"]: p for p in out.iterdir()
            if (p / "bundle.json").exists()}  # fmt: skip


def test_good_rows_done_bad_rows_reported_rerun_resumes(tmp_path, receiver, ctl):
    plan, out = write_csv(tmp_path / "plan.csv", CSV), tmp_path / "bundles"
    r = ctl("fleet", "plan", plan, "--out", out, "--ttl", "2d")
    assert r.code == 1, r.text
    assert "3 bundle(s) written, 0 already done, 4 row(s) failed" in r.out
    for line, why in (
        (6, "device id is empty"),
        (7, "'gw-f-01' is also on line 3"),
        (8, "has 3 fields, the header has 5"),
        (9, "area must be at most 128"),
    ):
        reported = [t for t in r.out.splitlines() if t.startswith(f"  line {line}: ")]
        assert len(reported) == 1, (line, r.out)
        assert why in reported[0], (line, r.out)
    assert "ignoring column(s) notes" in r.err
    assert "[1/3] gw-f-01: written" in r.err
    assert "[3/3] gw f/05: written" in r.err
    made = bundles(out)
    assert set(made) == {"gw-f-01", "gw-f-02", "gw f/05"}
    assert made["gw f/05"].name == bundle_name("gw f/05") != "gw f/05"
    for device_id, path in made.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        for f in path.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        meta = json.loads((path / "bundle.json").read_text())
        assert meta["cloud_url"] == receiver.url
        assert receiver.device(device_id)["status"] == "pending"
    shown = ctl("devices", "show", "gw f/05")
    assert "device:       gw f/05" in shown.out, shown.text
    text = (made["gw-f-02"] / "agent.toml").read_text()
    assert '# site = "baotou-1"' in text
    assert '# process = "casting"' in text
    tokens = {d: (p / "enrollment.token").read_text() for d, p in made.items()}

    # re-run unchanged: nothing new is issued, the bad rows are reported again
    r = ctl("fleet", "plan", plan, "--out", out)
    assert r.code == 1
    assert "0 bundle(s) written, 3 already done, 4 row(s) failed" in r.out
    assert {d: (p / "enrollment.token").read_text() for d, p in bundles(out).items()} == tokens

    # fix the bad rows: only they are done now
    fixed = "device_id,site,area,process\ngw-f-01,baotou-1,hall-1,melting\ngw-f-06,b,h,r\n"
    r = ctl("fleet", "plan", write_csv(plan, fixed), "--out", out)
    assert r.code == 0, r.text
    assert "1 bundle(s) written, 1 already done, 0 row(s) failed" in r.out
    assert set(bundles(out)) == {"gw-f-01", "gw-f-02", "gw f/05", "gw-f-06"}


def test_a_bundle_enrols_a_gateway_the_agent_accepts(tmp_path, receiver, ctl):
    plan = write_csv(tmp_path / "p.csv", "device_id,site,area,process\ngw-f-10,s1,a1,p1\n")
    out = tmp_path / "bundles"
    assert ctl("fleet", "plan", plan, "--out", out).code == 0
    bundle = out / "gw-f-10"
    gw = tmp_path / "gateway"
    r = Edgectl({})("enroll", "--bundle", bundle, "--dir", gw)  # no URL, no admin token
    assert r.code == 0, r.text
    assert receiver.device("gw-f-10")["status"] == "active"
    assert (gw / "agent.toml").read_text() == (bundle / "agent.toml").read_text()
    check = edge_agent("check-config", gw / "agent.toml")
    assert check.returncode == 0, check.stderr
    # the sources template, uncommented, is a valid source carrying the row's tags
    template = (gw / "agent.toml").read_text().split("# Sources:")[1]
    source = "\n".join(
        line[2:]
        for line in template.splitlines()
        if line.startswith("# [[") or (line.startswith("# ") and "=" in line)
    )
    assert 'site = "s1"' in source
    (gw / "with-source.toml").write_text((gw / "agent.toml").read_text() + "\n" + source + "\n")
    check = edge_agent("check-config", gw / "with-source.toml")
    assert check.returncode == 0, check.stderr
    r = Edgectl({})("enroll", "--bundle", bundle, "--dir", tmp_path / "second")
    assert r.code == 6  # the bundle's token worked once
    r = Edgectl({})("enroll", "--bundle", bundle, "--dir", gw, "--device", "gw-other")
    assert r.code == 3
    assert "differs from the bundle" in r.err


def test_an_interrupted_bundle_is_rebuilt(tmp_path, receiver, ctl):
    out = tmp_path / "bundles"
    partial = out / ".gw-f-20.partial"
    partial.mkdir(parents=True)
    (partial / "enrollment.token").write_text("half-written")
    plan = write_csv(tmp_path / "p.csv", "device_id\ngw-f-20\n")
    r = ctl("fleet", "plan", plan, "--out", out)
    assert r.code == 0, r.text
    assert not partial.exists()
    assert (out / "gw-f-20" / "enrollment.token").read_text().startswith("tle1.")


def test_unreachable_receiver_stops_the_run(tmp_path, ctl):
    plan = write_csv(tmp_path / "p.csv", "device_id\ngw-f-30\ngw-f-31\n")
    url = f"http://127.0.0.1:{free_port()}"
    r = ctl("fleet", "plan", plan, "--out", tmp_path / "o", "--cloud", url)
    assert r.code == 4
    assert "0 bundle(s) written" in r.out
    assert "2 not run" in r.out
    assert "cannot reach the receiver" in r.err


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "empty"), ("site,area\nx,y\n", "needs a device_id column"), ('id,"x\n', "CSV")],
)
def test_unusable_csv(tmp_path, ctl, text, why):
    r = ctl("fleet", "plan", write_csv(tmp_path / "p.csv", text), "--out", tmp_path / "o")
    assert r.code == 3
    assert why in r.err


def test_bundle_names_never_collide():
    names = {bundle_name(d) for d in ("gw/1", "gw_1", "gw 1", "gw-1", ".hidden", "..")}
    assert len(names) == 6
    assert all("/" not in n and not n.startswith(".") for n in names)
