"""`edge-agent probe`: a real process reads each configured source once and prints what it read
with the raw data, against the simulated meter and weighbridge on ptys and a real broker."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from firmware_bridge.port import PtyDevice
from firmware_bridge.sim.simulators import ModbusRtuBus, SimulatedMeter, Weighbridge
from tests.agent.helpers import write_config
from tests.firmware_bridge.conftest import running

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def links() -> Iterator[Path]:
    """A short private directory for pty symlinks (stands in for /dev/serial/by-id)."""
    with tempfile.TemporaryDirectory(prefix="probe-") as d:
        yield Path(d)


MODBUS = """[[sources]]
type = "modbus"
name = "main-bus"
transport = "rtu"
port = {{ path = "{bus}", baudrate = 115200 }}
timeout_ms = 300
retries = 1

[[sources.devices]]
name = "incomer"
unit_id = 1
profile = "eastron-sdm630"
include = ["power_total", "energy_import"]
poll_interval_ms = 60000
"""

WEIGHBRIDGE = r"""[[sources]]
type = "ascii"
name = "weighbridge"
port = {{ path = "{wb}", baudrate = 9600 }}
mode = "streaming"
command = "PRINT ON"
pattern = '{pattern}'
values = [{{ group = "net", metric = "net_mass", unit = "kg", medium = "material" }}]
status_group = "status"
status_map = {{ O = "good", M = "uncertain" }}
checksum = {{ algorithm = "xor8", group = "cs" }}
event = {{ kind = "weighbridge_ticket", attrs = {{ ticket = "ticket", net_kg = "net" }} }}
"""

# the example config's weighbridge line
PATTERN = (
    r"^T(?P<ticket>\d+),(?P<material>[A-Z]+),(?P<lot>[\w-]+),(?P<net>-?\d+),"
    r"(?P<status>[OM])\*(?P<cs>[0-9A-F]{2})$"
)

MQTT = """[[sources]]
type = "mqtt"
name = "sensors"
url = "{url}"
client_id = "agent-that-must-not-be-kicked"

[[sources.rules]]
topic = "{topic}/{{device}}"
metric_template = "{{device}}_{{metric}}"
values = [{{ metric = "temp", path = "t", unit = "Cel" }}]
"""


async def probe(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "probe",
        "--config",
        str(config),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.serial
async def test_probe_reads_the_meter_and_the_weighbridge_once(links: Path, tmp_path: Path) -> None:
    meter = SimulatedMeter()
    device = PtyDevice(str(links / "wb"))
    bridge = Weighbridge(device, interval_s=0.05)
    sources = MODBUS.format(bus=links / "bus") + WEIGHBRIDGE.format(
        wb=links / "wb", pattern=PATTERN
    )
    config = write_config(tmp_path, url="http://127.0.0.1:9", sources=sources)
    try:
        async with (
            ModbusRtuBus(str(links / "meter"), str(links / "bus"), {1: meter}),
            running(bridge.run(), "weighbridge"),
        ):
            code, out, err = await probe(config)
    finally:
        device.close()
    assert code == 0, out + err
    # one poll: the two metrics, good, with the registers they came from
    assert re.search(r"^  power_total = [\d.]+ W  \[good\]$", out, re.M), out
    assert re.search(r"^  energy_import = [\d.]+ kW\.?h  \[good\]$", out, re.M), out
    raw = re.findall(r"^  raw: unit 1 function 4 at (\d+)\+2: [0-9a-f]{4} [0-9a-f]{4}$", out, re.M)
    assert sorted(int(a) for a in raw) == sorted(
        p.address for p in meter.points if p.metric in ("power_total", "energy_import")
    )
    assert meter.requests <= 2  # read once (a request per register block), not polled on
    assert sum(meter.served.values()) == 2
    # the weighbridge's first ticket: the line as it came, the reading and the event
    assert bridge.commands[:1] == [b"PRINT ON"]
    first = bridge.tickets[0]
    assert f"  net_mass = {first.net_kg} kg  [good]" in out
    assert f"  raw: {first.line().rstrip()!r}" in out
    assert f"  event weighbridge_ticket: ticket={first.number} net_kg={first.net_kg}  [good]" in out
    assert out.count("event weighbridge_ticket") == 1  # one round: the first ticket only
    assert not (tmp_path / "data").exists()  # no buffer was opened


@pytest.mark.serial
async def test_probe_one_named_source_and_a_silent_one_exits_1(links: Path, tmp_path: Path) -> None:
    sources = MODBUS.format(bus=links / "bus") + WEIGHBRIDGE.format(
        wb=links / "wb", pattern=PATTERN
    )
    config = write_config(tmp_path, url="http://127.0.0.1:9", sources=sources)
    device = PtyDevice(str(links / "wb"))  # a weighbridge that prints nothing
    try:
        code, out, err = await probe(config, "--source", "weighbridge", "--timeout", "1")
    finally:
        device.close()
    assert code == 1, out + err
    assert out.splitlines() == ["weighbridge: nothing read"]
    code, out, err = await probe(config, "--source", "nope")
    assert code == 3
    assert "no source named 'nope' (the config has: main-bus, weighbridge)" in err


@pytest.mark.mqtt
async def test_probe_shows_a_brokers_message_without_taking_the_agents_session(
    mqtt_url: str, unique_topic: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, url="http://127.0.0.1:9", sources=MQTT.format(url=mqtt_url, topic=unique_topic)
    )
    host, _, port = mqtt_url.removeprefix("mqtt://").partition(":")
    payload = json.dumps({"t": 21.5}).encode()
    agent_id = "agent-that-must-not-be-kicked"  # the configured client id: the agent's session
    async with (
        aiomqtt.Client(host, int(port or 1883)) as client,
        aiomqtt.Client(host, int(port or 1883), identifier=agent_id) as agent,
    ):
        # retained: the sensor's last value, there for the probe at once
        await client.publish(f"{unique_topic}/boiler", payload, qos=1, retain=True)
        try:
            code, out, err = await probe(config, "--timeout", "20")
        finally:
            await client.publish(f"{unique_topic}/boiler", b"", qos=1, retain=True)
        # a probe under the agent's client id would have made the broker drop this connection
        await agent.publish(f"{unique_topic}/still-here", b"1", qos=1)
    assert code == 0, out + err
    assert "  boiler_temp = 21.5 Cel  [good]" in out
    assert f"  raw: {unique_topic}/boiler {payload!r}" in out


MCU = """[[sources]]
type = "mcu"
name = "press-3"
port = {{ path = "{path}", baudrate = 115200 }}

[sources.channels]
"0" = {{ metric = "line_pressure", unit = "bar" }}
"1" = {{ metric = "oil_temp", unit = "Cel" }}
"""


@pytest.mark.serial
async def test_probe_shows_an_mcus_frames_and_acknowledges_nothing(
    links: Path, tmp_path: Path
) -> None:
    from firmware_bridge.sim.emulator import Emulator, FlashLog

    pty = PtyDevice(str(links / "mcu"))
    flash = FlashLog(links / "flash")
    emu = Emulator(pty, flash, channels=2, rate_hz=20, max_readings=50, value_mode="position")
    config = write_config(
        tmp_path, url="http://127.0.0.1:9", sources=MCU.format(path=links / "mcu")
    )
    try:
        async with running(emu.run(), "emulator"):
            code, out, err = await probe(config)
            held = len(flash.records)
    finally:
        pty.close()
        flash.close()
    assert code == 0, out + err
    assert re.search(r"^  line_pressure = [\d.e+]+ bar  \[good\]$", out, re.M), out
    assert re.search(r"^  oil_temp = [\d.e+]+ Cel  \[good\]$", out, re.M), out
    assert re.search(r"^  raw: reading frame boot \d+ seq \d+ channel 0 ", out, re.M), out
    assert held > 0  # the MCU keeps every reading: a probe sends no ACK


async def test_probe_shows_what_an_opc_ua_server_published() -> None:
    """In-process (asyncua's server runs in this event loop): one round of the nodes, with the
    value and status code as the server sent them."""
    from agent.probe import describe, probe_source
    from agent.sources.opcua.config import OpcuaNode, OpcuaSourceConfig
    from agent.sources.opcua.source import OpcuaSource
    from bench.opcua_plant import Plant

    async with Plant(variables=3, lines=1, rate_hz=5) as plant:
        ids = plant.node_ids()
        nodes = [OpcuaNode(node_id=n, metric=n.rsplit("=", 1)[1]) for n in ids]
        config = OpcuaSourceConfig(url=plant.url, nodes=nodes, publishing_interval_ms=100)
        sink = await probe_source(OpcuaSource(config), timeout_s=30)
    lines = describe("plc", sink)
    assert len(sink.readings) == len(ids), lines  # one round: each node once
    for node_id in ids:
        assert any(line.startswith(f"  raw: {node_id}: ") for line in lines), lines
    assert any(" status 0x00000000 at " in line for line in lines), lines
