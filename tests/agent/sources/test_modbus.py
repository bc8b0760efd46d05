"""The Modbus source against pymodbus' own server acting as meters, over real ptys (and TCP)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

from agent.sources import HostStamper
from agent.sources.modbus import ModbusSource
from firmware_bridge.modbus_config import ModbusConfig
from firmware_bridge.modbus_map import encode_words
from firmware_bridge.port import NullModem
from firmware_bridge.sim.simulators import ModbusRtuBus
from tests.agent.sources.conftest import Recorder
from tests.firmware_bridge.conftest import running
from wire.models import Quality

pytestmark = pytest.mark.serial

ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
VALUES = {
    "u16": 4660.0,
    "i16": -2.0,
    "u32": 305419896.0,
    "i32": -123456.0,
    "float32": 230.5,
    "float64": 12345.678,
}


def device(registers: list[int]) -> ModbusDeviceContext:
    # pymodbus' data blocks are 1-based: block address 1 is wire address 0.
    return ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, list(registers)),
        ir=ModbusSequentialDataBlock(1, list(registers)),
    )


@contextlib.asynccontextmanager
async def serial_meters(links: Path, devices: dict[int, Any]) -> AsyncIterator[NullModem]:
    """pymodbus' server on one end of a null modem; our source opens `links/bus`."""
    async with ModbusRtuBus(str(links / "meter"), str(links / "bus"), devices) as bus:
        yield bus.modem


def rtu_config(links: Path, devices: list[dict[str, object]], **kw: object) -> ModbusConfig:
    raw = {
        "transport": "rtu",
        "port": {"path": str(links / "bus"), "baudrate": 115200},
        "timeout_ms": 150,
        "retries": 0,
        "reconnect_initial_ms": 20,
        "reconnect_max_ms": 200,
        "devices": devices,
        **kw,
    }
    return msgspec.convert(raw, ModbusConfig)


def by_metric(sink: Recorder) -> dict[str, list[tuple[float, int]]]:
    out: dict[str, list[tuple[float, int]]] = {}
    for r in sink.readings:
        out.setdefault(r.series.metric, []).append((r.value, r.quality))
    return out


async def test_every_type_and_word_order_arrives(links: Path, sink: Recorder) -> None:
    registers = [0] * 100
    points = []
    address = 0
    for dtype, value in VALUES.items():
        for word_order, byte_order in ORDERS:
            words = encode_words(value, dtype, word_order, byte_order)  # type: ignore[arg-type]
            registers[address : address + len(words)] = words
            points.append(
                {
                    "metric": f"{dtype}_{word_order}_{byte_order}",
                    "address": address,
                    "type": dtype,
                    "function": 3 if address % 2 else 4,
                    "word_order": word_order,
                    "byte_order": byte_order,
                }
            )
            address += len(words)
    cfg = rtu_config(links, [{"name": "meter", "unit_id": 1, "points": points}], max_registers=16)
    source = ModbusSource(cfg, clock=HostStamper())
    async with serial_meters(links, {1: device(registers)}), running(source.run(sink), "modbus"):
        await sink.wait_for(lambda: len(sink.readings) >= len(points))
    got = by_metric(sink)
    for dtype, value in VALUES.items():
        for word_order, byte_order in ORDERS:
            v, q = got[f"{dtype}_{word_order}_{byte_order}"][0]
            assert q == Quality.GOOD
            assert v == pytest.approx(value, rel=1e-7), (dtype, word_order, byte_order)
    assert source.stats.units[1].ok >= 1


async def test_profile_meter_scaled_values(links: Path, sink: Recorder) -> None:
    registers = [0] * 400
    registers[0:2] = encode_words(231.2, "float32")  # voltage_l1
    registers[0x48:0x4A] = encode_words(1234.5, "float32")  # energy_import
    registers[0x156:0x158] = encode_words(1300.25, "float32")  # energy_total
    cfg = rtu_config(
        links,
        [
            {
                "name": "sdm",
                "unit_id": 7,
                "profile": "eastron-sdm630",
                "include": ["voltage_l1", "energy_import", "energy_total"],
            }
        ],
    )
    async with serial_meters(links, {7: device(registers)}):
        source = ModbusSource(cfg, clock=HostStamper())
        async with running(source.run(sink), "modbus"):
            await sink.wait_for(lambda: len(sink.readings) >= 3)
    got = by_metric(sink)
    assert got["voltage_l1"][0][0] == pytest.approx(231.2, rel=1e-6)
    assert got["energy_import"][0][0] == pytest.approx(1234.5)
    assert got["energy_total"][0][0] == pytest.approx(1300.25)
    assert sink.readings[0].series.medium == "electricity"


async def test_exceptions_and_timeouts_are_counted_and_flagged(links: Path, sink: Recorder) -> None:
    registers = encode_words(42.0, "float32") + [0] * 8
    cfg = rtu_config(
        links,
        [
            {
                "name": "good",
                "unit_id": 1,
                "poll_interval_ms": 50,
                "points": [
                    {"metric": "ok", "address": 0, "type": "float32"},
                    {"metric": "beyond", "address": 500, "type": "u16"},  # exception 2
                ],
            },
            {
                "name": "dead",
                "unit_id": 9,  # nobody answers
                "poll_interval_ms": 50,
                "points": [{"metric": "silent", "address": 0}],
            },
        ],
        down_after_failures=2,
        down_retry_ms=60_000,
    )
    source = ModbusSource(cfg, clock=HostStamper())
    async with serial_meters(links, {1: device(registers)}), running(source.run(sink), "modbus"):
        await sink.wait_for(lambda: len(by_metric(sink).get("ok", [])) >= 10)
    got = by_metric(sink)
    assert all(q == Quality.GOOD and v == 42.0 for v, q in got["ok"])
    assert all(q == Quality.BAD for _, q in got["beyond"])
    assert all(q == Quality.BAD and v == 0.0 for v, q in got["silent"])
    good, dead = source.stats.units[1], source.stats.units[9]
    assert good.exceptions.get(2, 0) >= 1
    assert dead.timeouts == 2  # then the circuit opened: no more bus time spent on it
    assert dead.skipped_down >= 1
    assert len(got["silent"]) >= 3  # … but its gap stays explicit


async def test_unplugged_adapter_is_survived(links: Path, sink: Recorder) -> None:
    registers = encode_words(7.0, "float32")
    cfg = rtu_config(
        links,
        [
            {
                "name": "m",
                "unit_id": 1,
                "poll_interval_ms": 50,
                "points": [{"metric": "v", "address": 0, "type": "float32"}],
            }
        ],
    )
    source = ModbusSource(cfg, clock=HostStamper())
    async with (
        serial_meters(links, {1: device(registers)}) as modem,
        running(source.run(sink), "modbus"),
    ):
        await sink.wait_for(lambda: len(sink.readings) >= 3)
        await modem.cut("b")  # USB adapter pulled
        await sink.wait_for(lambda: sum(r.quality == Quality.BAD for r in sink.readings) >= 3)
        await modem.splice("b")  # and plugged back in at the same path
        n = len(sink.readings)
        await sink.wait_for(
            lambda: any(r.quality == Quality.GOOD for r in sink.readings[n:]), within=10
        )
    assert source.stats.links_lost >= 1
    assert source.stats.connects >= 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_modbus_tcp(sink: Recorder) -> None:
    port = free_port()
    context = ModbusServerContext(devices={3: device(encode_words(-5.5, "float64"))}, single=False)
    server = ModbusTcpServer(context, address=("127.0.0.1", port))
    task = asyncio.create_task(server.serve_forever(), name="pymodbus tcp server")
    try:
        await asyncio.sleep(0.1)
        cfg = msgspec.convert(
            {
                "transport": "tcp",
                "host": "127.0.0.1",
                "tcp_port": port,
                "timeout_ms": 300,
                "devices": [
                    {
                        "name": "t",
                        "unit_id": 3,
                        "points": [{"metric": "x", "address": 0, "type": "float64"}],
                    }
                ],
            },
            ModbusConfig,
        )
        source = ModbusSource(cfg, clock=HostStamper())
        async with running(source.run(sink), "modbus tcp"):
            await sink.wait_for(lambda: len(sink.readings) >= 1)
    finally:
        await server.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sink.readings[0].value == -5.5


async def test_missing_port_retries_with_bad_readings(links: Path, sink: Recorder) -> None:
    cfg = rtu_config(
        links,
        [
            {
                "name": "m",
                "unit_id": 1,
                "poll_interval_ms": 30,
                "points": [{"metric": "v", "address": 0}],
            }
        ],
    )
    source = ModbusSource(cfg, clock=HostStamper())
    async with running(source.run(sink), "modbus"):
        await sink.wait_for(lambda: len(sink.readings) >= 3)
    assert source.stats.connect_failures >= 1
    assert all(r.quality == Quality.BAD for r in sink.readings)


async def test_out_of_range_is_bad_and_counted_and_polls_are_not_requests(
    links: Path, sink: Recorder
) -> None:
    """An SDM630 energy register reading −1 kW.h and a voltage of −5 V cannot be GOOD; a poll
    that takes three requests counts one poll and three requests."""
    registers = [0] * 400
    registers[0:2] = encode_words(-5.0, "float32")  # voltage_l1: an RMS value below zero
    registers[0x48:0x4A] = encode_words(-1.0, "float32")  # energy_import: a counter below zero
    registers[0x156:0x158] = encode_words(12.5, "float32")  # energy_total: fine
    cfg = rtu_config(
        links,
        [
            {
                "name": "main",
                "unit_id": 1,
                "profile": "eastron-sdm630",
                "include": ["voltage_l1", "energy_import", "energy_total"],
                "poll_interval_ms": 200,
            }
        ],
    )
    source = ModbusSource(cfg, clock=HostStamper())
    assert len(source.plans[0].requests) == 3  # max_gap 0: one request per point here
    async with serial_meters(links, {1: device(registers)}), running(source.run(sink), "modbus"):
        await sink.wait_for(lambda: len(sink.readings) >= 6)
    first = {m: v[0] for m, v in by_metric(sink).items()}
    assert first["voltage_l1"] == (-5.0, Quality.BAD)  # exact in float32
    assert first["energy_import"] == (-1.0, Quality.BAD)
    assert first["energy_total"] == (12.5, Quality.GOOD)
    assert source.stats.out_of_range >= 2
    unit = source.stats.units[1]
    assert unit.polls >= 2
    assert 3 * (unit.polls - 1) <= unit.requests <= 3 * unit.polls  # the last may be underway


async def test_pymodbus_log_lines_name_the_source(sink: Recorder, caplog) -> None:
    """Observed: pymodbus' lines ("Failed to connect ...") did not say which bus."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    cfg = msgspec.convert(
        {
            "name": "press-bus",
            "transport": "tcp",
            "host": "127.0.0.1",
            "tcp_port": port,
            "timeout_ms": 200,
            "reconnect_initial_ms": 20,
            "reconnect_max_ms": 50,
            "devices": [{"name": "m", "unit_id": 1, "points": [{"metric": "x", "address": 0}]}],
        },
        ModbusConfig,
    )
    source = ModbusSource(cfg, clock=HostStamper())
    caplog.set_level("WARNING", logger="pymodbus.logging")
    async with running(source.run(sink), "modbus"):
        await sink.wait_for(lambda: source.stats.connect_failures >= 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "pymodbus.logging"]
    assert lines, "pymodbus logged nothing about the refused connection"
    assert all(line.startswith("press-bus: ") for line in lines), lines
