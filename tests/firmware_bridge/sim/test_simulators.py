"""The simulated instruments count exactly what they produce: the demo's summary relies on it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from agent.sources import HostStamper
from agent.sources.modbus import ModbusSource
from firmware_bridge.ascii_protocol import AnswerParser, AsciiConfig, compile_spec
from firmware_bridge.modbus_config import ModbusConfig
from firmware_bridge.port import PtyDevice, SerialPort
from firmware_bridge.port_config import PortConfig
from firmware_bridge.sim.simulators import ModbusRtuBus, SimulatedMeter, Ticket, Weighbridge, xor8
from tests.agent.sources.conftest import Recorder
from tests.firmware_bridge.conftest import running, wait_until
from wire.models import Quality

pytestmark = pytest.mark.serial

TICKET_CONFIG = msgspec.convert(
    {
        "port": {"path": "/dev/null"},
        "mode": "streaming",
        "pattern": r"^T(?P<ticket>\d+),(?P<material>[A-Z]+),(?P<lot>[\w-]+),(?P<net>-?\d+),"
        r"(?P<status>[OM])\*(?P<cs>[0-9A-F]{2})$",
        "values": [{"group": "net", "metric": "net_mass", "unit": "kg"}],
        "status_group": "status",
        "status_map": {"O": "good", "M": "uncertain"},
        "checksum": {"algorithm": "xor8", "group": "cs"},
        "event": {"kind": "ticket", "attrs": {"ticket": "ticket", "net_kg": "net"}},
    },
    AsciiConfig,
)


def test_ticket_line_parses_with_the_example_pattern() -> None:
    line = Ticket(1042, "GRAVEL", "L-7", 25340).line()
    assert (
        line == b"T1042,GRAVEL,L-7,25340,O*" + xor8("T1042,GRAVEL,L-7,25340,O*").encode() + b"\r\n"
    )
    answer = AnswerParser(compile_spec(TICKET_CONFIG)).parse(line.decode().strip())
    assert answer.attrs == (("ticket", 1042), ("net_kg", 25340))
    assert answer.quality == Quality.GOOD


def test_meter_serves_only_requests_covering_its_points() -> None:
    meter = SimulatedMeter(clock=lambda: 0.0)
    assert meter.read(4, 0x48, 4) is not None  # energy_import + energy_export
    assert meter.served == Counter({"energy_import": 1, "energy_export": 1})
    assert meter.read(4, 0x49, 2) is None  # splits a float: a poller would not ask this
    assert meter.read(3, 0x48, 4) is None  # holding registers: not this meter's map
    assert meter.read(4, 0x200, 2) is None
    assert meter.requests == 1


async def test_every_answered_request_is_one_reading_per_point(links: Path) -> None:
    sink = Recorder()
    meter = SimulatedMeter()
    config = msgspec.convert(
        {
            "port": {"path": str(links / "bus")},
            # An answer that comes after the poller gave up is served but read as a gap: on a
            # loaded machine 200 ms was too short for "every answer is one reading" to hold.
            "timeout_ms": 2000,
            "retries": 0,
            "devices": [
                {"name": "m", "unit_id": 1, "profile": "eastron-sdm630", "poll_interval_ms": 50}
            ],
        },
        ModbusConfig,
    )
    source = ModbusSource(config, clock=HostStamper())
    bus = ModbusRtuBus(str(links / "meter"), str(links / "bus"), {1: meter})
    async with bus, running(source.run(sink), "modbus"):
        await sink.wait_for(lambda: len(sink.readings) >= 5 * 14, 60)
        bus.silent = True  # switched off: the poller now gets no answers
        await sink.wait_for(lambda: any(r.quality == Quality.BAD for r in sink.readings), 60)
    good = Counter(r.series.metric for r in sink.readings if r.quality == Quality.GOOD)
    assert good == meter.served
    assert len(good) == 14
    assert bus.stats.answered == meter.requests
    assert bus.stats.ignored >= 1
    energy = [
        r.value for r in sink.readings if r.series.metric == "energy_import" and r.quality == 0
    ]
    assert energy == sorted(energy)  # a counter


async def test_weighbridge_prints_only_once_told_to(links: Path) -> None:
    device = PtyDevice(str(links / "wb"))
    bridge = Weighbridge(device, interval_s=0.05)
    port = SerialPort.open(PortConfig(path=str(links / "wb")))
    try:
        async with running(bridge.run(), "weighbridge"):
            await asyncio.sleep(0.2)
            assert bridge.tickets == []
            await port.write(b"PRINT ON\r\n")
            await wait_until(lambda: len(bridge.tickets) >= 3)
            bridge.stop()
            printed = len(bridge.tickets)
            received = b""
            while received.count(b"\r\n") < printed:
                received += await asyncio.wait_for(port.read(), 2)
            await asyncio.sleep(0.2)
            assert len(bridge.tickets) == printed  # stopped
    finally:
        port.close()
        device.close()
    assert received.splitlines() == [t.line().rstrip() for t in bridge.tickets]
    assert [t.number for t in bridge.tickets] == list(range(1001, 1001 + printed))
    assert bridge.commands == [b"PRINT ON"]
