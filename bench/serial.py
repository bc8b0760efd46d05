"""Serial figures: MCU frames per second (codec alone and end to end over a pty) and Modbus
polls per second against pymodbus' own server over a pty pair, each with its cost per reading.

- `serial.mcu_codec_frames_per_s`: READING frames decoded by the sans-I/O connection (COBS, CRC,
  layout, sequence check), one frame = one reading; `serial.mcu_codec_us_per_reading` its inverse.
- `serial.mcu_frames_per_s`: readings replayed by the firmware emulator from its flash, through a
  pseudo-terminal, decoded, added to a sink and acknowledged back, end to end;
  `serial.mcu_us_per_reading` wall time and `serial.mcu_cpu_us_per_reading` CPU time of this
  process per reading (bridge *and* emulator: they share the process).
- `serial.modbus_polls_per_s`: read requests answered per second (four meters on one bus, each
  one request of 20 registers carrying 10 float32 points, each due every millisecond so the bus
  never idles) by pymodbus' RTU server through a null modem of two ptys at
  115200 baud (a pty does not pace bytes, so this measures software, not the line);
  `serial.modbus_us_per_reading` wall and `serial.modbus_cpu_us_per_reading` CPU time per reading
  (client, server and relay together).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer

from agent.sources import HostStamper
from agent.sources.mcu import McuSource
from agent.sources.modbus import ModbusSource
from agent.watermarks import MemoryWatermarks
from firmware_bridge.framing import encode_frame
from firmware_bridge.mcu_config import McuConfig
from firmware_bridge.mcu_connection import NEED_DATA, Connection, Role
from firmware_bridge.mcu_frames import TS_UTC, HelloAck, ReadingFrame, ValueType, encode_body
from firmware_bridge.modbus_config import ModbusConfig
from firmware_bridge.modbus_map import encode_words
from firmware_bridge.port import NullModem, PtyDevice
from firmware_bridge.sim.emulator import Emulator, FlashLog
from wire.models import Event, SeriesKey

UNITS = (1, 2, 3, 4)


class CountingSink:
    """The agent's Sink reduced to a count: every batch is committed at once."""

    def __init__(self) -> None:
        self.readings = 0
        self._ids: dict[SeriesKey, int] = {}

    def series_id(self, key: SeriesKey) -> int:
        return self._ids.setdefault(key, len(self._ids) + 1)

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        self.readings += 1

    def add_event(self, event: Event) -> None:
        return None

    def room(self) -> int:
        return 1 << 30

    def last_value(self, series_id: int) -> float | None:
        return None

    async def committed(self) -> None:
        return None


def codec(n: int) -> dict[str, float]:
    frames = [
        encode_frame(
            encode_body(
                ReadingFrame(3, i, i % 8, TS_UTC, 0, 1_767_225_600_000 + i, ValueType.F64, i * 0.5)
            )
        )
        for i in range(n)
    ]
    stream = b"".join(frames)
    best = float("inf")
    for _ in range(3):
        conn = Connection(Role.BRIDGE)
        conn.receive_data(encode_frame(encode_body(HelloAck(1, 3, 1, 0, 3, 0, 8, "b"))))
        conn.next_event()
        started = time.perf_counter()
        for i in range(0, len(stream), 4096):  # the size of one port read
            conn.receive_data(stream[i : i + 4096])
            while conn.next_event() is not NEED_DATA:
                pass
        best = min(best, time.perf_counter() - started)
        if conn.stats.readings != n:
            raise RuntimeError(f"codec bench decoded {conn.stats.readings} of {n}")
    return {
        "serial.mcu_codec_frames_per_s": n / best,
        "serial.mcu_codec_us_per_reading": best / n * 1e6,
        "serial.mcu_frame_bytes": len(stream) / n,
    }


async def mcu_end_to_end(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as d:
        link = Path(d) / "mcu"
        pty = PtyDevice(str(link))
        flash = FlashLog(Path(d) / "flash")
        emu = Emulator(pty, flash, channels=8, rate_hz=0, window_cap=4096)
        for i in range(n):  # readings taken while no bridge was listening
            emu._take(i % 8)  # filling the flash directly is the point
        source = McuSource(
            msgspec.convert({"port": {"path": str(link)}, "window": 4096}, McuConfig),
            clock=HostStamper(),
            watermarks=MemoryWatermarks(),
        )
        sink = CountingSink()

        emu_task = asyncio.create_task(emu.run(), name="bench emulator")
        cpu, wall = time.process_time(), time.perf_counter()
        src_task = asyncio.create_task(source.run(sink), name="bench bridge")
        try:
            async with asyncio.timeout(120):
                while sink.readings < n or flash.records:  # noqa: ASYNC110 - two tasks' state, no event
                    await asyncio.sleep(0.005)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            for task in (src_task, emu_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            pty.close()
            flash.close()
    return {
        "serial.mcu_frames_per_s": n / wall,
        "serial.mcu_us_per_reading": wall / n * 1e6,
        "serial.mcu_cpu_us_per_reading": cpu / n * 1e6,
    }


async def modbus_polls(seconds: float) -> dict[str, float]:
    registers: list[int] = []
    for i in range(10):
        registers += encode_words(230.0 + i, "float32")
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as d:
        async with NullModem(f"{d}/meter", f"{d}/bus"):
            devices: dict[int, Any] = {
                unit: ModbusDeviceContext(ir=ModbusSequentialDataBlock(1, registers))  # type: ignore[no-untyped-call]
                for unit in UNITS
            }
            server = ModbusSerialServer(
                ModbusServerContext(devices=devices, single=False),
                framer=FramerType.RTU,
                port=f"{d}/meter",
                baudrate=115200,
            )
            server_task = asyncio.create_task(server.serve_forever(), name="bench meter")
            await asyncio.sleep(0.1)
            cfg = msgspec.convert(
                {
                    "port": {"path": f"{d}/bus", "baudrate": 115200},
                    "timeout_ms": 500,
                    # several meters due every millisecond: the bus is never idle
                    "devices": [
                        {
                            "name": f"m{unit}",
                            "unit_id": unit,
                            "poll_interval_ms": 1,
                            "metric_prefix": f"m{unit}_",
                            "points": [
                                {
                                    "metric": f"p{i}",
                                    "address": 2 * i,
                                    "type": "float32",
                                    "function": 4,
                                }
                                for i in range(10)
                            ],
                        }
                        for unit in UNITS
                    ],
                },
                ModbusConfig,
            )
            source = ModbusSource(cfg, clock=HostStamper())
            sink = CountingSink()
            task = asyncio.create_task(source.run(sink), name="bench modbus")
            try:
                await asyncio.sleep(0.3)  # connect and warm up
                start_readings = sink.readings
                cpu, wall = time.process_time(), time.perf_counter()
                await asyncio.sleep(seconds)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                n = sink.readings - start_readings
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await server.shutdown()  # type: ignore[no-untyped-call]
                server_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await server_task
    if not n or source.stats.bad_readings:
        raise RuntimeError(f"modbus bench: {n} readings, {source.stats.bad_readings} bad")
    return {
        "serial.modbus_polls_per_s": n / 10 / wall,
        "serial.modbus_us_per_reading": wall / n * 1e6,
        "serial.modbus_cpu_us_per_reading": cpu / n * 1e6,
    }


def run(size: str) -> dict[str, float]:
    full = size == "full"
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # per-request debug lines
    results = codec(200_000 if full else 20_000)
    results |= asyncio.run(mcu_end_to_end(50_000 if full else 5_000))
    results |= asyncio.run(modbus_polls(10.0 if full else 3.0))
    return results


if __name__ == "__main__":
    for key, value in run("small").items():
        print(f"{key:40} {value:12.2f}")
