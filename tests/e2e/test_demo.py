"""`make demo SECONDS=20`, i.e. `python -m demo --seconds 20`: real processes (receiver, agent,
edgectl, the emulated devices on ptys, Mosquitto when there is one), and its verdict: every device
produced, the receiver stored each reading exactly once, nothing was left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.serial]
ROOT = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.timeout(90)
def test_demo_stores_every_reading_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--seconds", "20", "--dir", str(run_dir)]
        + ["--summary-json", str(summary), "--progress-s", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "result: nothing lost, nothing duplicated" in done.stdout, output
    assert "Traceback" not in output

    result = json.loads(summary.read_text())
    assert result["ok"], output
    assert result["drained"], output
    assert (result["lost"], result["duplicated"], result["unexpected"]) == (0, 0, 0), output
    assert result["chain"]["gaps"] == result["chain"]["forks"] == result["chain"]["dropped"] == 0
    assert result["seconds"] >= 20
    devices = result["devices"]
    expected = {"meter", "mcu", "weighbridge"}
    if "mqtt" in result["skipped"]:
        reason = result["skipped"]["mqtt"]
        assert not (REQUIRE_SERVICES and "mosquitto" in reason), reason
    else:
        expected.add("mqtt")
    assert set(devices) == expected
    for name, d in devices.items():
        assert d["ok"], (name, d)
        assert d["produced"] > 0, (name, d)
        assert d["stored"] == d["produced"], (name, d)
    assert devices["meter"]["produced"] >= 15 * 14  # ~one poll of 14 points a second
    assert devices["mcu"]["produced"] >= 20 * 2 * 2 * 0.8  # 2 channels at 2 Hz
    assert devices["weighbridge"]["produced"] >= 2 * 5  # a ticket every 3 s: event + reading

    for line in ("receiver   edge-cloud serve", "gateway    gw-demo-01", "agent      edge-agent"):
        assert line in done.stdout
    assert "dashboard:   http://127.0.0.1:" in done.stdout
    assert "/?token=" in done.stdout
    assert done.stdout.count("] readings meter") >= 3  # progress lines

    assert processes_mentioning(str(run_dir)) == []
    assert not list((run_dir / "dev").iterdir())  # every pty unplugged
