"""Gateway health with real processes: an agent reporting to a real receiver, on both stores.

A serial source on a real pseudo-terminal is unplugged (the pty closed) and must show as down
with its reason; the receiver is killed and restarted and the agent's state (restarts, the
source's down-since, the backlog) must come through intact in the next report.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.port import PtyDevice
from tests.agent.e2e import AgentProc, Receiver, make_agent, wait_until
from tests.agent.test_e2e_serial import TICKET_PATTERN, WEIGHBRIDGE

pytestmark = [pytest.mark.e2e, pytest.mark.serial]
DEVICE = "gw-e2e"
SYNTHETIC = '[[sources]]\ntype = "test"\nname = "synthetic"\nrate_hz = 20\nseries = 2\n'


@pytest.fixture
def links() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="health-e2e-") as d:
        yield Path(d)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    db_url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    r = Receiver(tmp_path / "cloud", db_url=db_url)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def read_api(receiver: Receiver, path: str) -> tuple[int, Any]:
    token = receiver.read_file.read_text()
    req = urllib.request.Request(
        f"{receiver.url}{path}", headers={"authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


def health(receiver: Receiver) -> dict[str, Any] | None:
    status, body = read_api(receiver, f"/v1/devices/{DEVICE}/health?limit=100")
    return body if status == 200 else None


def source(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in report["sources"] if s["name"] == name]
    assert len(found) == 1, report["sources"]
    return found[0]


def wait_for_report(receiver, agent, what, check, timeout=30.0) -> dict[str, Any]:
    """The first report (newest) for which `check(report)` holds."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        h = health(receiver)
        if h is not None and check(h["report"]):
            found.append(h)
            return True
        return False

    wait_until(ready, timeout, what, agent.log_text, receiver.log_text)
    return found[0]


async def test_health_appears_shows_an_unplugged_source_and_survives_a_receiver_outage(
    tmp_path, links, store_receiver, agents
):
    receiver = store_receiver
    link = links / "weighbridge"
    pty = PtyDevice(str(link))
    agent: AgentProc = await asyncio.to_thread(  # enrolment runs its own event loop
        make_agent,
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=SYNTHETIC + WEIGHBRIDGE.format(path=link, pattern=TICKET_PATTERN),
        cloud={"health_interval_s": 2},
    )
    config_version = hashlib.sha256(agent.config.read_bytes()).hexdigest()[:16]
    started = time.time()
    agent.start()
    try:
        # 1. within seconds of the start, a report with everything in it
        first = await asyncio.to_thread(
            wait_for_report, receiver, agent, "first report", lambda r: True
        )
        assert time.time() - started < 20
        report = first["report"]
        assert report["device_id"] == DEVICE
        assert report["config_version"] == config_version
        assert report["agent_version"]
        assert report["restarts"] == 0
        assert {s["name"] for s in report["sources"]} == {"synthetic", "weighbridge"}
        assert source(report, "weighbridge")["state"] == "up"
        assert set(report["drops"]) == {"buffer_full", "damaged", "rejected_invalid"}
        assert report["clock_state"] == 0  # assume_synced in the test config
        # ... and the device list carries it
        status, devices = await asyncio.to_thread(read_api, receiver, "/v1/devices")
        assert status == 200
        (listed,) = [d for d in devices["devices"] if d["device_id"] == DEVICE]
        assert listed["health"]["report"]["config_version"] == config_version

        # 2. the serial port disappears: down, since when and why, within seconds
        unplugged_ms = int(time.time() * 1000)
        pty.close()
        down = await asyncio.to_thread(
            wait_for_report,
            receiver,
            agent,
            "weighbridge down",
            lambda r: source(r, "weighbridge")["state"] == "down",
        )
        weighbridge = source(down["report"], "weighbridge")
        assert weighbridge["reason"] == "port_lost"
        assert weighbridge["outages"] == 1
        assert abs(weighbridge["down_since_ms"] - unplugged_ms) < 10_000
        assert source(down["report"], "synthetic")["state"] == "up"

        # 3. the receiver is away for a while: reports fail, readings wait, nothing is lost
        receiver.kill9()
        await asyncio.sleep(5)  # more than two report intervals
        receiver.start()
        after = await asyncio.to_thread(
            wait_for_report,
            receiver,
            agent,
            "a report after the outage",
            lambda r: r["errors"].get("health_reports_failed", 0) > 0,
        )
        report = after["report"]
        assert report["restarts"] == 0  # the agent kept running
        assert report["started_ms"] == first["report"]["started_ms"]
        assert source(report, "weighbridge")["down_since_ms"] == weighbridge["down_since_ms"]
        assert len(after["history"]) >= 3  # the history holds the reports before the outage
        # the readings made during the outage arrive after it
        await asyncio.to_thread(
            wait_until,
            lambda: (
                (h := health(receiver)) is not None and h["report"]["backlog"]["readings"] < 100
            ),
            30,
            "backlog drained",
            agent.log_text,
            receiver.log_text,
        )

        # 4. an agent restart is counted
        assert await asyncio.to_thread(agent.stop) == 0
        agent.start()
        restarted = await asyncio.to_thread(
            wait_for_report, receiver, agent, "restarted", lambda r: r["restarts"] == 1
        )
        assert restarted["report"]["started_ms"] > first["report"]["started_ms"]
    finally:
        pty.close()
