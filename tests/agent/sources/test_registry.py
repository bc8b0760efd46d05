"""The sources as `build_source` makes them: the serial ones against real peers on ptys."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from agent.clock import EPOCH_SHIFT, AgentClock, SystemTime
from agent.config import AsciiSourceConfig, McuSourceConfig, ModbusSourceConfig
from agent.ingest import Ingest
from agent.sources.mcu import McuSource
from agent.sources.registry import SourceContext, build_source
from agent.watermarks import BufferWatermarks, MemoryWatermarks
from firmware_bridge.modbus_map import encode_words
from firmware_bridge.port import PtyDevice
from firmware_bridge.sim.emulator import Emulator, FlashLog
from tests.agent.sources.test_modbus import device, serial_meters
from tests.firmware_bridge.conftest import running, wait_until
from tests.firmware_bridge.test_ascii_protocol import TICKET, xor8
from wire.models import TIME_UNTRUSTED, Event, SeriesKey

pytestmark = pytest.mark.serial


@pytest.fixture
def links() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fb-agent-") as d:
        yield Path(d)


class FakeSink:
    """The agent's Sink: rows in memory; `committed()` waits until the test lets commits go."""

    def __init__(self) -> None:
        self.keys: dict[SeriesKey, int] = {}
        self.rows: list[tuple[int, float, int, int | None]] = []
        self.events: list[Event] = []
        self.commits_allowed = asyncio.Event()
        self.commits_allowed.set()

    def series_id(self, key: SeriesKey) -> int:
        return self.keys.setdefault(key, len(self.keys) + 1)

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        self.rows.append((series_id, value, quality, ts_ms))

    def add_event(self, event: Event) -> None:
        self.events.append(event)

    def last_value(self, series_id: int) -> float | None:
        return None

    def room(self) -> int:
        return 1_000_000

    async def committed(self) -> None:
        await self.commits_allowed.wait()


def agent_clock(*, trusted: bool = True, epoch: int = 7) -> AgentClock:
    return AgentClock(
        SystemTime(), lambda: trusted, kernel_boot_id="boot", floor_ms=0, next_epoch_id=epoch
    )


def context(clock: AgentClock) -> SourceContext:
    ingest = Ingest(clock, series={}, last_values={}, flush_max_readings=100, max_pending=1000)
    return SourceContext(clock=clock, watermarks=BufferWatermarks({}, ingest))


async def test_modbus_source_is_stamped_by_the_agents_clock(links: Path) -> None:
    cfg = msgspec.convert(
        {
            "type": "modbus",
            "name": "bus",
            "port": {"path": str(links / "bus")},
            "timeout_ms": 200,
            "devices": [
                {
                    "name": "m",
                    "unit_id": 1,
                    "points": [{"metric": "v", "address": 0, "type": "float32"}],
                }
            ],
        },
        ModbusSourceConfig,
    )
    sink = FakeSink()
    source = build_source(cfg, context(agent_clock(trusted=False)))
    assert source.name == "bus"
    meters = serial_meters(links, {1: device(encode_words(3.25, "float32"))})
    async with meters, running(source.run(sink), "source:bus"):
        await wait_until(lambda: len(sink.rows) >= 2)
    _sid, value, quality, ts = sink.rows[0]
    assert value == 3.25
    assert ts is not None
    assert quality == TIME_UNTRUSTED | (7 << EPOCH_SHIFT)  # the agent's untrusted epoch
    assert list(sink.keys) == [SeriesKey("v")]
    assert source.stats.units[1].ok >= 2  # type: ignore[attr-defined]


async def test_ascii_weighbridge_tickets_reach_the_sink_as_events(links: Path) -> None:
    pty = PtyDevice(str(links / "bridge"))
    raw = msgspec.to_builtins(TICKET)
    raw.update(type="ascii", name="weighbridge", port={"path": str(links / "bridge")})
    sink = FakeSink()
    source = build_source(msgspec.convert(raw, AsciiSourceConfig), context(agent_clock()))
    body = "T1042,GRAVEL,L-7,25340,O*"
    async with running(source.run(sink), "source:weighbridge"):
        await asyncio.sleep(0.1)
        await pty.write((body + xor8(body) + "\r\n").encode())
        await wait_until(lambda: len(sink.events) == 1)
    (event,) = sink.events
    assert event.kind == "weighbridge_ticket"
    assert dict(event.attrs) == {
        "ticket": 1042,
        "material": "GRAVEL",
        "lot": "L-7",
        "net_kg": 25340,
    }
    assert event.quality == 0
    assert sink.rows[0][1:3] == (25340.0, 0)
    assert sink.rows[0][3] == event.ts_ms  # one answer, one time
    assert source.stats.events == 1  # type: ignore[attr-defined]
    pty.close()


async def test_mcu_keeps_the_agents_untrusted_time_flags(links: Path) -> None:
    """Readings stamped in MCU time are mapped through the agent's clock: with that clock
    untrusted they carry TIME_UNTRUSTED and the clock's epoch, so the buffer can correct them."""
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=1, rate_hz=200, max_readings=10)
    cfg = msgspec.convert(
        {"type": "mcu", "name": "node", "port": {"path": str(links / "mcu")}}, McuSourceConfig
    )
    sink = FakeSink()
    source = build_source(cfg, context(agent_clock(trusted=False, epoch=5)))
    async with running(emu.run(), "emulator"):
        await wait_until(lambda: emu.produced == 10)  # all in MCU time: no sync yet
        async with running(source.run(sink), "source:node"):
            await wait_until(lambda: len(sink.rows) == 10 and not flash.records)
    assert {q for _s, _v, q, _t in sink.rows} == {TIME_UNTRUSTED | (5 << EPOCH_SHIFT)}
    assert all(ts is not None for *_, ts in sink.rows)
    pty.close()
    flash.close()


async def test_mcu_acknowledges_only_after_commit(links: Path) -> None:
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=2, rate_hz=200, max_readings=40)
    cfg = msgspec.convert(
        {"name": "node", "port": {"path": str(links / "mcu")}, "ack_repeat_ms": 100},
        McuSourceConfig,
    )
    sink = FakeSink()
    sink.commits_allowed.clear()  # the buffer is slow
    source = McuSource(cfg, clock=agent_clock(), watermarks=MemoryWatermarks())
    async with running(emu.run(), "emulator"), running(source.run(sink), "source:node"):
        await wait_until(lambda: len(sink.rows) == 40)
        await asyncio.sleep(0.2)
        assert len(flash.records) == 40  # delivered, not committed: the MCU keeps them all
        sink.commits_allowed.set()
        await wait_until(lambda: not flash.records)
    assert all(ts is not None for *_, ts in sink.rows)  # the MCU's own time, mapped to UTC
    pty.close()
    flash.close()
