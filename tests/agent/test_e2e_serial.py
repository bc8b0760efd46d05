"""Serial sources in the whole agent: real processes, real pseudo-terminals, real receiver."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.port import PtyDevice
from firmware_bridge.sim.emulator import Emulator, FlashLog
from firmware_bridge.sim.simulators import Ticket
from tests.agent.e2e import ROOT, make_agent
from tests.agent.helpers import journal_rows, write_config, write_key
from tests.firmware_bridge.conftest import running, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.serial]


@pytest.fixture
def links() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fb-e2e-") as d:
        yield Path(d)


TICKET_PATTERN = (
    r"^T(?P<ticket>\d+),(?P<material>[A-Z]+),(?P<lot>[\w-]+),(?P<net>-?\d+),"
    r"(?P<status>[OM])\*(?P<cs>[0-9A-F]{2})$"
)
WEIGHBRIDGE = """[[sources]]
type = "ascii"
name = "weighbridge"
port = {{ path = "{path}" }}
mode = "streaming"
pattern = '{pattern}'
values = [{{ group = "net", metric = "net_mass", unit = "kg", medium = "material" }}]
status_group = "status"
status_map = {{ O = "good", M = "uncertain" }}
checksum = {{ algorithm = "xor8", group = "cs" }}
reopen_initial_ms = 20
[sources.event]
kind = "weighbridge_ticket"
attrs = {{ ticket = "ticket", material = "material", lot = "lot", net_kg = "net" }}
"""


def ticket_line(n: int) -> bytes:
    return Ticket(n, "GRAVEL" if n % 2 else "SAND", f"L-{n}", 20000 + n).line()


async def test_weighbridge_tickets_reach_the_receiver_as_events(tmp_path, links, receiver, agents):
    pty = PtyDevice(str(links / "weighbridge"))
    agent = await asyncio.to_thread(  # enrolment runs its own event loop
        make_agent,
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=WEIGHBRIDGE.format(path=links / "weighbridge", pattern=TICKET_PATTERN),
    )
    agent.start()

    def events() -> list[tuple[str, int, int, dict[str, Any]]]:
        rows = receiver.query("SELECT kind, seq, quality, attrs FROM event ORDER BY id")
        return [(k, s, q, json.loads(a)) for k, s, q, a in rows]

    # Streaming: lines sent before the agent opened the port are flushed by the open, so keep
    # weighing trucks until three tickets have arrived.
    sent: list[int] = []
    try:
        async with asyncio.timeout(30):
            while len(events()) < 3:
                n = 1000 + len(sent)
                await pty.write(ticket_line(n))
                sent.append(n)
                await asyncio.sleep(0.2)
    finally:
        assert agent.stop() == 0
        pty.close()
    got = events()
    tickets = [e[3]["ticket"] for e in got]
    assert len(tickets) == len(set(tickets)) >= 3  # each once
    assert tickets == sorted(tickets)
    assert set(tickets) <= set(sent)
    for kind, seq, quality, attrs in got:
        n = attrs["ticket"]
        assert kind == "weighbridge_ticket"
        assert attrs == {
            "ticket": n,
            "material": "GRAVEL" if n % 2 else "SAND",
            "lot": f"L-{n}",
            "net_kg": 20000 + n,
        }
        assert quality == 0
        assert seq >= 1
    masses = [v for _ts, v, _q in receiver.readings("gw-e2e")["net_mass"]]
    assert masses == [20000.0 + n for n in tickets]  # the reading of each answer came too


def _buffer_positions(db: Path) -> list[tuple[int, int]]:
    conn = sqlite3.connect(db)
    try:
        values = [v for (v,) in conn.execute("SELECT value FROM reading ORDER BY id")]
    finally:
        conn.close()
    values += [v for _s, _t, v, _q in journal_rows(db)]  # committed, not yet merged
    return [(int(v) // 1_000_000, int(v) % 1_000_000) for v in values]


async def _child(config: Path, mode: str, watermarks: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.agent.mcu_crash_child",
        str(config),
        mode,
        watermarks,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.parametrize("watermarks", ["buffer", "file"])
async def test_kill_9_between_commit_and_ack_does_not_duplicate(tmp_path, links, watermarks):
    """The agent commits MCU readings, then dies before acknowledging them: the MCU replays
    them. With the positions in the buffer's transaction (what the agent uses) the replay is
    dropped; `FileWatermarks` duplicates exactly the readings of that window (its documented
    limit, shown here so that this test demonstrably detects duplicates)."""
    write_key(tmp_path / "keys" / "device.key")
    config = write_config(
        tmp_path,
        url="http://127.0.0.1:9",  # no receiver: the readings stay in the buffer to be counted
        sources=(
            f'[[sources]]\ntype = "mcu"\nname = "node"\nport = {{ path = "{links / "mcu"}" }}\n'
            "hello_timeout_ms = 200\nack_repeat_ms = 100\nreopen_initial_ms = 20\n"
            "reopen_max_ms = 200\n"
        ),
    )
    db = tmp_path / "data" / "buffer.db"
    total = 200
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=2, rate_hz=100, max_readings=total, value_mode="position")
    async with running(emu.run(), "emulator"):
        child = await _child(config, "stall", watermarks)
        try:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), 20)  # a group is committed
            await asyncio.sleep(0.2)  # more groups commit; none is acknowledged
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        first_run = _buffer_positions(db)
        unacked = {r.position for r in flash.records}
        assert first_run
        assert set(first_run) <= unacked  # committed, never acknowledged: the MCU keeps them
        child = await _child(config, "run", watermarks)
        try:
            await wait_until(lambda: emu.produced == total and not flash.records, within=20)
            await asyncio.sleep(0.3)  # a duplicate would be committed by now
        finally:
            child.terminate()
            assert await child.wait() == 0
    pty.close()
    flash.close()
    counts = Counter(_buffer_positions(db))
    assert sorted(counts) == [(1, s) for s in range(total)]  # nothing lost
    duplicated = sorted(p for p, n in counts.items() if n > 1)
    if watermarks == "buffer":
        assert duplicated == []
    else:
        assert duplicated == sorted(first_run)
