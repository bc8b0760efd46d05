"""`edgectl config push|status` against a real receiver process (whose checker is the agent's,
run as its child process)."""

from __future__ import annotations

import json

import pytest

from wire.remoteconfig import config_sha256

GOOD = '[clock]\nsync_check = "assume_synced"\n\n[[sources]]\ntype = "test"\nrate_hz = 2\n'


def test_push_then_status(tmp_path, receiver, ctl):
    for device in ("gw-cfg-1", "gw-cfg-2"):
        assert ctl("enroll", "--dir", tmp_path / device, "--device", device,
                   stdin=receiver.token(device)).code == 0  # fmt: skip
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    r = ctl("config", "push", good, "--device", "gw-cfg-1")
    assert r.code == 0, r.text
    sha = config_sha256(GOOD.encode())
    assert r.out.splitlines() == [
        f"config {sha[:16]} pushed to 1 gateway(s):",
        "  gw-cfg-1: version 1",
    ]
    assert ctl("config", "push", good, "--device", "gw-cfg-1").out.splitlines()[1] == (
        "  gw-cfg-1: version 2"
    )
    table = ctl("config", "status")
    assert table.code == 0, table.text
    header, *rows = table.out.splitlines()
    assert header.split() == ["DEVICE", "DESIRED", "SHA256", "PUSHED", "RUNNING", "LAST", "RESULT"]
    mine = {r.split()[0]: r.split() for r in rows if r.startswith("gw-cfg-")}
    assert mine["gw-cfg-1"][1:3] == ["v2", sha[:16]]
    assert mine["gw-cfg-2"][1:3] == ["-", "-"]
    listed = json.loads(ctl("config", "status", "--json").out)["devices"]
    (one,) = [d for d in listed if d["device_id"] == "gw-cfg-1"]
    assert (one["desired_version"], one["desired_sha256"]) == (2, sha)


def test_a_refused_push_prints_every_problem(tmp_path, receiver, ctl):
    assert ctl("enroll", "--dir", tmp_path, "--device", "gw-cfg-3",
               stdin=receiver.token("gw-cfg-3")).code == 0  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text('[[sources]]\ntype = "test"\nrate_hz = -1\npassword = "hunter2"\n')
    r = ctl("config", "push", bad, "--device", "gw-cfg-3")
    assert r.code == 14, r.text
    assert "config refused (1 problem(s)):" in r.err
    assert "config: sources[0].password: looks like a secret" in r.err
    assert "hunter2" not in r.text
    bad.write_text('[[sources]]\ntype = "test"\nrate_hz = -1\n')
    r = ctl("config", "push", bad, "--device", "gw-cfg-3")
    assert r.code == 14, r.text
    assert "config: sources[0].rate_hz:" in r.err


def test_targets_are_named_and_checked(tmp_path, ctl):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    for argv in ((), ("--device", "a", "--tag", "site=x")):  # exactly one target: argparse
        with pytest.raises(SystemExit) as exit_:
            ctl("config", "push", good, *argv)
        assert exit_.value.code == 2
    assert ctl("config", "push", good, "--device", "gw-nobody").code == 11
    assert ctl("config", "push", good, "--tag", "colour=red").code == 3
    assert ctl("config", "push", tmp_path / "missing.toml", "--device", "x").code == 3
