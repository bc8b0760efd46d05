"""`edgectl doctor`: one PASS/WARN/FAIL line per check, FAIL lines say what to do, exit 1 on any
FAIL."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.helpers import free_port
from tests.provisioning.conftest import Edgectl, RealReceiver


def enrol(ctl: Edgectl, receiver: RealReceiver, directory: Path, device_id: str) -> Path:
    r = ctl("enroll", "--dir", directory, "--device", device_id, stdin=receiver.token(device_id))
    assert r.code == 0, r.text
    return directory


def append(directory: Path, text: str) -> None:
    config = directory / "agent.toml"
    config.write_text(config.read_text().replace('sync_check = "auto"', "") + text)


TEST_SOURCE = '\n[[sources]]\ntype = "test"\n'
SYNCED = '\n[clock]\nsync_check = "assume_synced"\n'


def lines(text: str) -> dict[str, str]:
    """check name -> status, from the output lines"""
    out = {}
    for line in text.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "WARN", "FAIL"):
            out[rest.split(":", 1)[0]] = status
    return out


def test_a_healthy_gateway_passes_everything(tmp_path, receiver, ctl):
    gw = enrol(ctl, receiver, tmp_path / "gw", "gw-doc-ok")
    (gw / "agent.toml").write_text(
        (gw / "agent.toml").read_text().replace('sync_check = "auto"', SYNCED.split("\n")[2])
        + TEST_SOURCE
    )
    r = ctl("doctor", "--dir", gw)
    assert r.code == 0, r.out
    assert lines(r.out) == {
        "config": "PASS",
        "key file": "PASS",
        "receiver": "PASS",
        "enrolment": "PASS",
        "clock": "PASS",
        "buffer": "PASS",
    }, r.out
    assert "accepted by edge-agent check-config" in r.out
    assert r.out.rstrip().endswith("all checks passed")


def test_revoked_device_and_a_clock_an_hour_fast(tmp_path, receiver, ctl):
    gw = enrol(ctl, receiver, tmp_path / "gw", "gw-doc-revoked")
    assert ctl("devices", "revoke", "gw-doc-revoked").code == 0
    started = time.monotonic()
    r = ctl("doctor", "--dir", gw, now_ms=time.time_ns() // 10**6 + 3_600_000)
    elapsed_s = time.monotonic() - started
    assert r.code == 1
    found = lines(r.out)
    assert (found["enrolment"], found["clock"], found["receiver"]) == ("FAIL", "FAIL", "PASS")
    assert "re-enrol: edgectl enroll --replace" in r.out
    offset = re.search(r"this clock is \+(\d+) s off the receiver's", r.out)
    assert offset is not None, r.out
    # A revoked key gets no chain head, so the receiver's time is its Date header: whole seconds
    # (up to 1 s behind), from a cache the server refreshes about once a second (1 s more, and
    # longer on a loaded machine). The test's clock stands still while doctor runs, so the
    # offset also comes out lower by up to the time the run took.
    assert 3600 - elapsed_s - 1 <= int(offset[1]) <= 3600 + 10, r.out
    assert r.out.rstrip().endswith("2 check(s) failed")


def test_receiver_down(tmp_path, receiver, ctl):
    gw = enrol(ctl, receiver, tmp_path / "gw", "gw-doc-down")
    config = gw / "agent.toml"
    config.write_text(config.read_text().replace(receiver.url, f"http://127.0.0.1:{free_port()}"))
    r = ctl("doctor", "--dir", gw)
    assert r.code == 1
    assert lines(r.out)["receiver"] == "FAIL"
    assert "cannot reach the receiver" in r.out
    assert "enrolment" not in lines(r.out)


@pytest.fixture
def pty_path() -> Iterator[str]:
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


@pytest.fixture
def broker_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_serial_ports_and_brokers_named_in_the_config(
    tmp_path, receiver, ctl, pty_path, broker_port
):
    gw = enrol(ctl, receiver, tmp_path / "gw", "gw-doc-ports")
    closed = free_port()
    # a file the agent accepts: doctor reads it with the agent's parser
    append(
        gw,
        f"""
[[sources]]
type = "modbus"
name = "meters"
port = {{ path = "{pty_path}", baudrate = 9600 }}
devices = [{{ name = "incomer", unit_id = 1, profile = "eastron-sdm630" }}]

[[sources]]
type = "mcu"
name = "mcu"
port = {{ path = "/dev/serial/by-id/usb-not-plugged-in" }}

[[sources]]
type = "modbus"
name = "tcp-meters"
transport = "tcp"
host = "127.0.0.1"
tcp_port = {closed}
devices = [{{ name = "flow", unit_id = 1, profile = "eastron-sdm630" }}]

[[sources]]
type = "mqtt"
name = "sensors"
url = "mqtt://127.0.0.1:{broker_port}"
rules = [{{ preset = "tasmota" }}]
""",
    )
    r = ctl("doctor", "--dir", gw)
    assert r.code == 1
    found = lines(r.out)
    assert found["sources[0] meters port"] == "PASS", r.out
    assert found["sources[1] mcu port"] == "FAIL"
    assert found["sources[2] tcp-meters Modbus TCP"] == "FAIL"
    assert found["sources[3] sensors MQTT broker"] == "PASS"
    assert "plug the adapter in, or fix the path (stable names: ls -l /dev/serial/by-id/)" in r.out
    assert f"127.0.0.1:{closed} does not accept connections" in r.out


def test_interrupted_rotation_is_pointed_out(tmp_path, receiver, ctl):
    from provisioning.rotate import prepare

    gw = enrol(ctl, receiver, tmp_path / "gw", "gw-doc-left")
    prepare(gw / "device.key", say=lambda _: None)
    r = ctl("doctor", "--dir", gw)
    assert lines(r.out)["leftovers"] == "WARN"
    assert f"edgectl rotate-key --dir {gw}" in r.out


def test_missing_or_broken_config(tmp_path, ctl):
    r = ctl("doctor", "--dir", tmp_path)
    assert (r.code, lines(r.out)) == (1, {"config": "FAIL"})
    (tmp_path / "agent.toml").write_text("[device]\nid = 'x'\n")
    r = ctl("doctor", "--dir", tmp_path)
    assert r.code == 1
    assert "device.key_file: missing" in r.out
