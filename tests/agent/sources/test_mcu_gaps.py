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
    loop = asyncio.get_running_loop()
    source = McuSource(config(link), clock=HostStamper(), watermarks=MemoryWatermarks())
    async with running(source.run(sink), "bridge"):
        # boot 1 streams for a while (100 readings at 50 Hz: ~2 s), then is unplugged
        pty = PtyDevice(str(link))
        flash = FlashLog(links / "flash", uid=0xABC)
        async with running(Emulator(pty, flash, channels=1, rate_hz=50).run(), "boot 1"):
            await wait_until(lambda: len(sink.readings) >= 100)
        flash.close()
        pty.close()
        unplugged = loop.time()
        await wait_until(lambda: bool(events(sink, DOWN_KIND)))
        await asyncio.sleep(0.5)
        pty = PtyDevice(str(link))
        flash = FlashLog(links / "flash")
        async with running(Emulator(pty, flash, channels=1, rate_hz=50).run(), "boot 2"):
            await wait_until(lambda: bool(events(sink, UP_KIND)))
            gone_s = loop.time() - unplugged
        flash.close()
        pty.close()
    assert [e["reason"] for e in events(sink, DOWN_KIND)] == ["port_lost"]
    (up,) = events(sink, UP_KIND)
    assert isinstance(up["down_ms"], int)
    # from the last frame before the unplug, not from the session's start 2 s earlier
    assert 500 <= up["down_ms"] <= gone_s * 1000 + 500
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.sources.mcu"]
    assert len([m for m in lines if m.startswith("mcu: lost (port_lost")]) == 1
    assert len([m for m in lines if m.startswith("mcu: back after")]) == 1
