"""The MCU source against the firmware emulator over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from agent.sources import HostStamper
from agent.sources.mcu import McuSource
from agent.watermarks import FileWatermarks, MemoryWatermarks
from firmware_bridge.mcu_config import McuConfig
from firmware_bridge.mcu_frames import McuPosition
from firmware_bridge.port import PtyDevice
from firmware_bridge.port_config import PortConfig
from firmware_bridge.sim.emulator import Emulator, FlashLog
from tests.agent.sources.conftest import Recorder
from tests.firmware_bridge.conftest import running, wait_until
from wire.models import TIME_UNTRUSTED

pytestmark = pytest.mark.serial


def config(link: Path, **kw: object) -> McuConfig:
    fast: dict[str, object] = {
        "hello_timeout_ms": 200,
        "resend_timeout_ms": 100,
        "ack_repeat_ms": 200,
        "reopen_initial_ms": 20,
        "reopen_max_ms": 200,
        "probe_after_ms": 1000,
        "dead_after_ms": 3000,
    }
    fast.update(kw)
    return msgspec.convert({"port": {"path": str(link)}, **fast}, McuConfig)


def positions(values: list[float]) -> list[tuple[int, int]]:
    return [(int(v) // 1_000_000, int(v) % 1_000_000) for v in values]


async def test_line_noise_costs_nothing(links: Path, sink: Recorder) -> None:
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(
        pty,
        flash,
        channels=3,
        rate_hz=200,
        max_readings=300,
        value_mode="position",
        corrupt_every=7,
    )
    source = McuSource(config(links / "mcu"), clock=HostStamper(), watermarks=MemoryWatermarks())
    try:
        async with running(emu.run(), "emulator"), running(source.run(sink), "bridge"):
            # Every 7th frame is damaged and waits out a resend timeout: several seconds on an
            # idle machine, more than 10 on a loaded one (the flake this bound was).
            await sink.wait_for(lambda: len(sink.readings) >= 300 and not flash.records, 90)
    finally:
        # Closed even when the wait fails: a flash log left open is a ResourceWarning in
        # whichever later test the garbage collector happens to run (test_layering, once).
        pty.close()
        flash.close()
    values = [r.value for r in sink.readings]
    assert sorted(positions(values)) == [(1, s) for s in range(300)]
    assert source.stats.damaged_frames > 0
    assert source.stats.resends > 0
    assert source.stats.readings == 300


class CrashingBuffer(Recorder):
    """The agent's buffer as the MCU source sees it: the sink and the watermark store, sharing
    one transaction. `stage()` commits the readings added since the last one together with the
    position, like `BufferWatermarks` through the ingest; `committed()` returns after the next
    group commit (every 50 ms), so acknowledgements lag behind commits. While `crashed` (the
    process dying), nothing reaches it and nothing is acknowledged any more. The object
    outlives the sources: it is the database that survives restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False
        self.committed_values: list[float] = []
        self.positions: dict[int, McuPosition] = {}
        self._open: list[float] = []  # added, not yet committed

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        if not self.crashed:
            self._open.append(value)

    def stage(self, uid: int, position: McuPosition) -> None:
        if not self.crashed:  # one transaction: the readings and the position they end
            self.committed_values += self._open
            self.positions[uid] = position
        self._open = []

    def load(self, uid: int) -> McuPosition | None:
        return self.positions.get(uid)

    def save(self, uid: int, position: McuPosition) -> None:
        assert self.positions[uid] >= position  # durable since the commit before this call

    def forget(self, uid: int) -> None:
        self.positions.pop(uid, None)

    async def committed(self) -> None:
        await asyncio.sleep(0.05)
        if self.crashed:
            await asyncio.Event().wait()  # a dying process acknowledges nothing


async def test_exactly_once_across_bridge_restarts(links: Path) -> None:
    """The agent stores each batch's position with its readings (one transaction) and lets the
    source acknowledge only after its next group commit; the bridge is killed at arbitrary
    points, so some readings were committed but never acknowledged to the MCU (it replays them),
    and some were delivered but never committed (they must come again)."""
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=2, rate_hz=150, max_readings=400, value_mode="position")
    buffer = CrashingBuffer()
    committed = buffer.committed_values

    async with running(emu.run(), "emulator"):
        for restart in range(4):
            buffer.crashed = False
            source = McuSource(config(links / "mcu"), clock=HostStamper(), watermarks=buffer)
            async with running(source.run(buffer), f"bridge {restart}"):
                await asyncio.sleep(0.25 + 0.1 * restart)
                buffer.crashed = True
        buffer.crashed = False
        source = McuSource(config(links / "mcu"), clock=HostStamper(), watermarks=buffer)
        async with running(source.run(buffer), "bridge final"):
            await wait_until(lambda: emu.produced == 400 and len(committed) >= 400, within=15)
            await asyncio.sleep(0.2)  # a duplicate would arrive now
    counts = Counter(positions(committed))
    assert [p for p, n in counts.items() if n > 1] == []
    assert sorted(counts) == [(1, s) for s in range(400)]
    pty.close()
    flash.close()


async def test_emulator_power_cycle_and_port_replug(links: Path) -> None:
    """Readings delivered but not yet committed when the MCU dies, and readings taken but not
    yet sent, all arrive exactly once after the MCU comes back on a new pty at the same path."""
    link = links / "mcu"
    sink = Recorder(commits=False)  # the buffer commits nothing until the MCU is off

    source = McuSource(config(link), clock=HostStamper(), watermarks=FileWatermarks(links / "wm"))
    async with running(source.run(sink), "bridge"):
        pty = PtyDevice(str(link))
        flash = FlashLog(links / "flash", uid=0xABC)
        emu = Emulator(pty, flash, channels=2, rate_hz=100, max_readings=120, value_mode="position")
        async with running(emu.run(), "emulator boot 1"):
            await wait_until(lambda: len(sink.readings) >= 40)
        produced_boot1 = emu.produced
        flash.close()
        pty.close()  # power off: the bridge's port reads EIO, the path disappears
        sink.commits_allowed.set()  # the buffer commits what it got while the MCU is off
        await asyncio.sleep(0.1)
        pty = PtyDevice(str(link))  # power on; the adapter re-enumerates at the same path
        flash = FlashLog(links / "flash")
        assert flash.boot == 2
        assert flash.uid == 0xABC
        emu = Emulator(pty, flash, channels=2, rate_hz=100, max_readings=60, value_mode="position")
        async with running(emu.run(), "emulator boot 2"):
            await wait_until(lambda: emu.produced == 60 and not flash.records, within=15)
        flash.close()
        pty.close()
    counts = Counter(positions([r.value for r in sink.readings]))
    assert [p for p, n in counts.items() if n > 1] == []
    expected = [(1, s) for s in range(produced_boot1)] + [(2, s) for s in range(60)]
    assert sorted(counts) == expected
    assert source.stats.port.lost >= 1
    assert source.stats.port.opens >= 2
    assert source.stats.sessions >= 2


async def test_killed_emulator_process_loses_nothing(links: Path) -> None:
    """SIGKILL the emulator process mid-stream (a power cut), start it again on the same flash."""
    link, state = links / "mcu", links / "flash"
    sink = Recorder()  # commits, and so acknowledges, everything at once
    args = [
        sys.executable,
        "-m",
        "firmware_bridge.sim.emulator",
        "--link",
        str(link),
        "--state",
        str(state),
    ]
    args += ["--value-mode", "position", "--rate-hz", "100", "--channels", "2"]
    source = McuSource(config(link), clock=HostStamper(), watermarks=MemoryWatermarks())
    async with running(source.run(sink), "bridge"):
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL)
        try:
            await wait_until(lambda: len(sink.readings) >= 30, within=15)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        os.unlink(link)  # the killed process could not remove its symlink
        boot1 = [
            json.loads(line)["r"][1]
            for line in state.read_text().splitlines()
            if line.startswith('{"r"')
        ]
        proc = await asyncio.create_subprocess_exec(
            *args, "--max-readings", "20", stdout=asyncio.subprocess.DEVNULL
        )
        try:
            want = len(set(boot1)) + 20
            await wait_until(lambda: len(sink.readings) >= want, within=15)
            await asyncio.sleep(0.2)  # anything extra would be a duplicate
        finally:
            proc.terminate()
            await proc.wait()
    counts = Counter(positions([r.value for r in sink.readings]))
    assert [p for p, n in counts.items() if n > 1] == []
    assert sorted(counts) == [(1, s) for s in sorted(set(boot1))] + [(2, s) for s in range(20)]
    assert sorted(set(boot1)) == list(range(len(set(boot1))))


class UntrustedStamper(HostStamper):
    def now(self) -> tuple[int, int]:
        return super().now()[0], TIME_UNTRUSTED | (3 << 8)


async def test_time_mapping_of_readings_taken_before_the_bridge(
    links: Path, sink: Recorder
) -> None:
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=1, rate_hz=100, max_readings=20)
    async with running(emu.run(), "emulator"):
        await wait_until(lambda: emu.produced == 20)
        now_ms = HostStamper().now()[0]
        assert all(r.flags == 0 for r in flash.records)  # stamped in ms since boot
        source = McuSource(
            config(links / "mcu"), clock=UntrustedStamper(), watermarks=MemoryWatermarks()
        )
        async with running(source.run(sink), "bridge"):
            await sink.wait_for(lambda: len(sink.readings) == 20)
    for r in sink.readings:
        assert abs(r.ts_ms - now_ms) < 2000  # mapped onto UTC through the HELLO round trip
        assert r.quality & TIME_UNTRUSTED
        assert r.quality >> 8 == 3
    assert sink.readings[0].series.metric == "emulated_ch0"  # from CHANNEL_INFO
    pty.close()
    flash.close()


async def test_history_reset_forgets_the_old_watermark(links: Path, sink: Recorder) -> None:
    watermarks = MemoryWatermarks()
    watermarks.save(
        0x77, McuPosition(9, 500)
    )  # this MCU once reached boot 9; its flash was wiped since
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash", uid=0x77)
    emu = Emulator(pty, flash, channels=1, rate_hz=200, max_readings=10, value_mode="position")
    source = McuSource(
        config(links / "mcu", channels={"0": {"metric": "line_pressure", "unit": "bar"}}),
        clock=HostStamper(),
        watermarks=watermarks,
    )
    async with running(emu.run(), "emulator"), running(source.run(sink), "bridge"):
        await sink.wait_for(lambda: len(sink.readings) == 10 and not flash.records)
    assert source.stats.history_resets == 1
    assert watermarks.load(0x77) == (1, 9)
    assert {r.series.metric for r in sink.readings} == {"line_pressure"}
    pty.close()
    flash.close()


async def test_busy_port_is_retried_not_fatal(links: Path, sink: Recorder) -> None:
    from firmware_bridge.port import SerialPort

    pty = PtyDevice(str(links / "mcu"))
    squatter = SerialPort.open(PortConfig(path=str(links / "mcu")))
    source = McuSource(config(links / "mcu"), clock=HostStamper(), watermarks=MemoryWatermarks())
    async with running(source.run(sink), "bridge"):
        await wait_until(lambda: source.stats.port.open_failures >= 2)
        assert source.stats.port.opens == 0
    squatter.close()
    pty.close()
