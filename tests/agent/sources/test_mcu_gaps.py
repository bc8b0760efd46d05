"""Gaps of the MCU source: the same events and log lines as every source (agent.sources.gaps),
against the firmware emulator over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.sources import HostStamper
from agent.sources.gaps import DOWN_KIND, UP_KIND
from agent.sources.mcu import McuSource
from agent.watermarks import MemoryWatermarks
from firmware_bridge.port import PtyDevice
from firmware_bridge.sim.emulator import Emulator, FlashLog
from tests.agent.sources.conftest import Recorder
from tests.agent.sources.test_mcu import config
from tests.firmware_bridge.conftest import running, wait_until

pytestmark = pytest.mark.serial


def events(sink: Recorder, kind: str) -> list[dict[str, object]]:
    return [dict(e.attrs) for e in sink.events if e.kind == kind]


async def test_unplugged_mcu_is_one_down_and_one_up_with_its_duration(
    links: Path, sink: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.mcu")
    link = links / "mcu"
    source = McuSource(config(link), clock=HostStamper(), watermarks=MemoryWatermarks())
    async with running(source.run(sink), "bridge"):
        for boot in (1, 2):
            pty = PtyDevice(str(link))
            flash = FlashLog(links / "flash", uid=0xABC)
            emu = Emulator(pty, flash, channels=1, rate_hz=50)
            async with running(emu.run(), f"emulator boot {boot}"):
                await wait_until(lambda want=10 * boot: len(sink.readings) >= want)  # type: ignore[misc]
            flash.close()
            pty.close()  # unplugged
            if boot == 1:
                await wait_until(lambda: bool(events(sink, DOWN_KIND)))
                await asyncio.sleep(0.5)
    assert [e["reason"] for e in events(sink, DOWN_KIND)][:1] == ["port_lost"]
    (up,) = events(sink, UP_KIND)
    assert isinstance(up["down_ms"], int)
    assert up["down_ms"] >= 500
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.sources.mcu"]
    assert len([m for m in lines if m.startswith("mcu: lost (port_lost")]) >= 1
    assert len([m for m in lines if m.startswith("mcu: back after")]) == 1
