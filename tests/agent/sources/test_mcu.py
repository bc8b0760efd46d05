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

from firmware_bridge.emulator import Emulator, FlashLog
from firmware_bridge.mcu_source import McuConfig, McuSource
from firmware_bridge.port import PortConfig, PtyDevice
from firmware_bridge.source import Delivery, SystemClock
from firmware_bridge.watermarks import FileWatermarks, MemoryWatermarks
from tests.firmware_bridge.conftest import Sink, running, wait_until
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


async def test_line_noise_costs_nothing(links: Path, sink: Sink) -> None:
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
    source = McuSource(config(links / "mcu"), clock=SystemClock(), watermarks=MemoryWatermarks())
    async with running(emu.run(), "emulator"), running(source.run(sink), "bridge"):
        await sink.wait_for(lambda: len(sink.readings) >= 300 and not flash.records)
    values = [r.value for r in sink.readings]
    assert sorted(positions(values)) == [(1, s) for s in range(300)]
    assert source.stats.damaged_frames > 0
    assert source.stats.resends > 0
    assert source.stats.readings == 300
    pty.close()
    flash.close()


async def test_exactly_once_across_bridge_restarts(links: Path) -> None:
    """The agent stores each delivery's position with its readings (one transaction) and calls
    ack() only now and then; the bridge is killed at arbitrary points, so some readings were
    committed but never acknowledged to the MCU (it replays them), and some were delivered but
    never committed (they must come again)."""
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=2, rate_hz=150, max_readings=400, value_mode="position")
    committed: list[float] = []
    store = MemoryWatermarks()  # stands for the agent's buffer database: survives restarts
    crashed = False
    calls = 0

    async def agent(delivery: Delivery) -> None:
        nonlocal calls
        if crashed:  # the process is dying: this delivery never reaches the buffer
            return
        committed.extend(r.value for r in delivery.readings)
        assert delivery.position is not None
        p = delivery.position
        store.save(p.uid, (p.boot, p.seq))  # same transaction as the readings
        calls += 1
        if calls % 3 == 0:
            delivery.ack()

    async with running(emu.run(), "emulator"):
        for restart in range(4):
            crashed = False
            source = McuSource(config(links / "mcu"), clock=SystemClock(), watermarks=store)
            async with running(source.run(agent), f"bridge {restart}"):
                await asyncio.sleep(0.25 + 0.1 * restart)
                crashed = True
        crashed = False
        source = McuSource(config(links / "mcu"), clock=SystemClock(), watermarks=store)
        async with running(source.run(agent), "bridge final"):
            await wait_until(lambda: emu.produced == 400 and len(committed) >= 400, within=15)
            await asyncio.sleep(0.2)  # a duplicate would arrive now
    counts = Counter(positions(committed))
    assert [p for p, n in counts.items() if n > 1] == []
    assert sorted(counts) == [(1, s) for s in range(400)]
    pty.close()
    flash.close()


async def test_file_watermarks_survive_a_restart(links: Path) -> None:
    marks = FileWatermarks(links / "wm.json")
    assert marks.load(5) is None
    marks.save(5, (2, 40))
    marks.save(6, (1, 1))
    again = FileWatermarks(links / "wm.json")
    assert again.load(5) == (2, 40)
    again.forget(6)
    assert FileWatermarks(links / "wm.json").load(6) is None
    (links / "bad.json").write_text("{not json")
    assert FileWatermarks(links / "bad.json").load(5) is None  # damaged: start without


async def test_emulator_power_cycle_and_port_replug(links: Path) -> None:
    """Readings delivered but not yet committed when the MCU dies, and readings taken but not
    yet sent, all arrive exactly once after the MCU comes back on a new pty at the same path."""
    link = links / "mcu"
    held: list[Delivery] = []
    commit_at_once = False

    async def agent(delivery: Delivery) -> None:
        held.append(delivery)
        if commit_at_once:
            delivery.ack()

    source = McuSource(config(link), clock=SystemClock(), watermarks=FileWatermarks(links / "wm"))
    async with running(source.run(agent), "bridge"):
        pty = PtyDevice(str(link))
        flash = FlashLog(links / "flash", uid=0xABC)
        emu = Emulator(pty, flash, channels=2, rate_hz=100, max_readings=120, value_mode="position")
        async with running(emu.run(), "emulator boot 1"):
            await wait_until(lambda: len([r for d in held for r in d.readings]) >= 40)
        produced_boot1 = emu.produced
        flash.close()
        pty.close()  # power off: the bridge's port reads EIO, the path disappears
        for d in held:
            d.ack()  # the buffer commits what it got while the MCU is off
        commit_at_once = True
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
    counts = Counter(positions([r.value for d in held for r in d.readings]))
    assert [p for p, n in counts.items() if n > 1] == []
    expected = [(1, s) for s in range(produced_boot1)] + [(2, s) for s in range(60)]
    assert sorted(counts) == expected
    assert source.stats.port.lost >= 1
    assert source.stats.port.opens >= 2
    assert source.stats.sessions >= 2


async def test_killed_emulator_process_loses_nothing(links: Path) -> None:
    """SIGKILL the emulator process mid-stream (a power cut), start it again on the same flash."""
    link, state = links / "mcu", links / "flash"
    committed: list[float] = []

    async def agent(delivery: Delivery) -> None:
        committed.extend(r.value for r in delivery.readings)
        delivery.ack()

    args = [
        sys.executable,
        "-m",
        "firmware_bridge.emulator",
        "--link",
        str(link),
        "--state",
        str(state),
    ]
    args += ["--value-mode", "position", "--rate-hz", "100", "--channels", "2"]
    source = McuSource(config(link), clock=SystemClock(), watermarks=MemoryWatermarks())
    async with running(source.run(agent), "bridge"):
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL)
        try:
            await wait_until(lambda: len(committed) >= 30, within=15)
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
            await wait_until(lambda: len(committed) >= want, within=15)
            await asyncio.sleep(0.2)  # anything extra would be a duplicate
        finally:
            proc.terminate()
            await proc.wait()
    counts = Counter(positions(committed))
    assert [p for p, n in counts.items() if n > 1] == []
    assert sorted(counts) == [(1, s) for s in sorted(set(boot1))] + [(2, s) for s in range(20)]
    assert sorted(set(boot1)) == list(range(len(set(boot1))))


class UntrustedClock(SystemClock):
    def now(self) -> tuple[int, int]:
        return super().now()[0], TIME_UNTRUSTED | (3 << 8)


async def test_time_mapping_of_readings_taken_before_the_bridge(links: Path, sink: Sink) -> None:
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=1, rate_hz=100, max_readings=20)
    async with running(emu.run(), "emulator"):
        await wait_until(lambda: emu.produced == 20)
        now_ms = SystemClock().now()[0]
        assert all(r.flags == 0 for r in flash.records)  # stamped in ms since boot
        source = McuSource(
            config(links / "mcu"), clock=UntrustedClock(), watermarks=MemoryWatermarks()
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


async def test_history_reset_forgets_the_old_watermark(links: Path, sink: Sink) -> None:
    watermarks = MemoryWatermarks()
    watermarks.save(0x77, (9, 500))  # this MCU once reached boot 9; its flash was wiped since
    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash", uid=0x77)
    emu = Emulator(pty, flash, channels=1, rate_hz=200, max_readings=10, value_mode="position")
    source = McuSource(
        config(links / "mcu", channels={"0": {"metric": "line_pressure", "unit": "bar"}}),
        clock=SystemClock(),
        watermarks=watermarks,
    )
    async with running(emu.run(), "emulator"), running(source.run(sink), "bridge"):
        await sink.wait_for(lambda: len(sink.readings) == 10 and not flash.records)
    assert source.stats.history_resets == 1
    assert watermarks.load(0x77) == (1, 9)
    assert {r.series.metric for r in sink.readings} == {"line_pressure"}
    pty.close()
    flash.close()


async def test_busy_port_is_retried_not_fatal(links: Path, sink: Sink) -> None:
    from firmware_bridge.port import SerialPort

    pty = PtyDevice(str(links / "mcu"))
    squatter = SerialPort.open(PortConfig(path=str(links / "mcu")))
    source = McuSource(config(links / "mcu"), clock=SystemClock(), watermarks=MemoryWatermarks())
    async with running(source.run(sink), "bridge"):
        await wait_until(lambda: source.stats.port.open_failures >= 2)
        assert source.stats.port.opens == 0
    squatter.close()
    pty.close()
