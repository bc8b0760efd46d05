"""The serial sources behind the agent's Source protocol, against real peers on ptys."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from agent.sources.ascii import AsciiAgentSource
from agent.sources.mcu import McuAgentSource
from agent.sources.modbus import ModbusAgentSource
from firmware_bridge.ascii_protocol import AsciiConfig
from firmware_bridge.emulator import Emulator, FlashLog
from firmware_bridge.mcu_source import McuConfig
from firmware_bridge.modbus_config import ModbusConfig
from firmware_bridge.modbus_map import encode_words
from firmware_bridge.port import PtyDevice
from firmware_bridge.watermarks import MemoryWatermarks
from tests.firmware_bridge.conftest import running, wait_until
from tests.firmware_bridge.test_ascii_source import Scale
from tests.firmware_bridge.test_modbus_source import device, serial_meters
from wire.models import SeriesKey

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
        self.commits_allowed = asyncio.Event()
        self.commits_allowed.set()

    def series_id(self, key: SeriesKey) -> int:
        return self.keys.setdefault(key, len(self.keys) + 1)

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        self.rows.append((series_id, value, quality, ts_ms))

    def last_value(self, series_id: int) -> float | None:
        return None

    async def committed(self) -> None:
        await self.commits_allowed.wait()


async def test_modbus_source_feeds_the_sink(links: Path) -> None:
    cfg = msgspec.convert(
        {
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
        ModbusConfig,
    )
    sink = FakeSink()
    source = ModbusAgentSource(cfg)
    assert source.name == "bus"
    meters = serial_meters(links, {1: device(encode_words(3.25, "float32"))})
    async with meters, running(source.run(sink), "source:bus"):
        await wait_until(lambda: len(sink.rows) >= 2)
    sid, value, quality, ts = sink.rows[0]
    assert (value, quality, ts) == (3.25, 0, None)  # the agent's clock stamps it
    assert list(sink.keys) == [SeriesKey("v")]


async def test_ascii_source_feeds_the_sink(links: Path) -> None:
    pty = PtyDevice(str(links / "scale"))
    scale = Scale(pty, ["S S     12.00 g"] * 100)
    cfg = msgspec.convert(
        {
            "name": "balance",
            "port": {"path": str(links / "scale")},
            "preset": "mt-sics",
            "poll_interval_ms": 20,
        },
        AsciiConfig,
    )
    sink = FakeSink()
    source = AsciiAgentSource(cfg)
    async with running(scale.run(), "scale"), running(source.run(sink), "source:balance"):
        await wait_until(lambda: len(sink.rows) >= 2)
    assert sink.rows[0][1:] == (12.0, 0, None)
    assert list(sink.keys) == [SeriesKey("weight", "g")]
    pty.close()


async def test_mcu_acknowledges_only_after_commit(links: Path) -> None:
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=2, rate_hz=200, max_readings=40)
    cfg = msgspec.convert(
        {"name": "node", "port": {"path": str(links / "mcu")}, "ack_repeat_ms": 100}, McuConfig
    )
    sink = FakeSink()
    sink.commits_allowed.clear()  # the buffer is slow
    source = McuAgentSource(cfg, watermarks=MemoryWatermarks())
    async with running(emu.run(), "emulator"), running(source.run(sink), "source:node"):
        await wait_until(lambda: len(sink.rows) == 40)
        await asyncio.sleep(0.2)
        assert len(flash.records) == 40  # delivered, not committed: the MCU keeps them all
        sink.commits_allowed.set()
        await wait_until(lambda: not flash.records)
    assert all(ts is not None for *_, ts in sink.rows)  # the MCU's own time, mapped to UTC
    pty.close()
    flash.close()
