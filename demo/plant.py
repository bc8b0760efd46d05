"""The demo plant: one gateway, its emulated devices, and the agent configuration that reads them.

Every device's series carry their own `area` tag, which is how the summary tells them apart:

| device      | area        | series                                                           |
| ----------- | ----------- | ---------------------------------------------------------------- |
| meter       | substation  | the 14 points of the Eastron SDM630 profile (electricity)        |
| mcu         | press-shop  | `compressed_air` (Nm3, gas) and `cooling_water` (m3, water)       |
| weighbridge | gate        | `net_mass` (kg, material) + one `weighbridge_ticket` event each  |
| mqtt        | hall-b      | `<sensor>.temperature`, `<sensor>.humidity`                       |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEVICE_ID = "gw-demo-01"
SITE = "demo-plant"
AREAS = {"substation": "meter", "press-shop": "mcu", "gate": "weighbridge", "hall-b": "mqtt"}
DEVICES = ("meter", "mcu", "weighbridge", "mqtt")
SOURCES = {"meter": "incomer-bus", "mcu": "press-3", "weighbridge": "weighbridge"}
SOURCES["mqtt"] = "hall-sensors"  # the agent's source name of each device
MCU_CHANNELS = {0: "compressed_air", 1: "cooling_water"}
TICKET_KIND = "weighbridge_ticket"
WEIGHBRIDGE_START = "PRINT ON"
MQTT_TOPIC_PREFIX = f"{SITE}/hall-b"
MQTT_SENSORS = ("th-01", "th-02", "th-03")
MQTT_VALUES = ("temperature", "humidity")
MQTT_CLIENT_ID = f"{DEVICE_ID}-sensors"
TICKET_PATTERN = (
    r"^T(?P<ticket>\d+),(?P<material>[A-Z]+),(?P<lot>[\w-]+),(?P<net>-?\d+),"
    r"(?P<status>[OM])\*(?P<cs>[0-9A-F]{2})$"
)

# The agent's tuning: fresh data in the cloud within about a second.
FLUSH_INTERVAL_MS = 200
BATCH_INTERVAL_MS = 500
MODBUS_POLL_MS = 1000
MODBUS_TIMEOUT_MS = 1000


@dataclass(frozen=True, slots=True)
class Links:
    """Where the emulated devices publish their serial ports (pty symlinks)."""

    mcu: Path
    meter: Path  # the meter's own end of the null modem
    bus: Path  # the end the gateway opens
    weighbridge: Path

    @classmethod
    def under(cls, directory: Path) -> Links:
        return cls(
            directory / "mcu", directory / "meter", directory / "bus", directory / "weighbridge"
        )


def _s(value: str) -> str:
    return json.dumps(value)  # a TOML basic string: JSON's escapes are a subset of TOML's


_NET_TAGS = f'site = {_s(SITE)}, area = "gate", process = "goods-in"'


def agent_toml(
    *, cloud_url: str, links: Links, metrics_port: int, mqtt_port: int | None = None
) -> str:
    """The gateway's agent.toml (key and buffer beside it)."""
    out = f"""# edge-agent configuration written by `make demo` (demo/plant.py) for {_s(DEVICE_ID)}.
# Every key: docs/configuration.md.

[device]
id = {_s(DEVICE_ID)}
key_file = "device.key"

[cloud]
url = {_s(cloud_url)}
batch_interval_ms = {BATCH_INTERVAL_MS}
retry_initial_ms = 200
retry_max_s = 5

[buffer]
path = "buffer.db"
flush_interval_ms = {FLUSH_INTERVAL_MS}

[metrics]
listen = "127.0.0.1:{metrics_port}"

[clock]
# The receiver runs on this machine: the same clock.
sync_check = "assume_synced"

# An Eastron SDM630 energy meter on an RS-485 line (Modbus RTU).
[[sources]]
type = "modbus"
name = {_s(SOURCES["meter"])}
port = {{ path = {_s(str(links.bus))}, baudrate = 115200 }}
timeout_ms = {MODBUS_TIMEOUT_MS}
retries = 0

[[sources.devices]]
name = "incomer"
unit_id = 1
profile = "eastron-sdm630"
poll_interval_ms = {MODBUS_POLL_MS}
site = {_s(SITE)}
area = "substation"
process = "plant-supply"

# A sensor node running our MCU firmware (emulated).
[[sources]]
type = "mcu"
name = {_s(SOURCES["mcu"])}
port = {{ path = {_s(str(links.mcu))} }}
site = {_s(SITE)}
area = "press-shop"
process = "pressing"
hello_timeout_ms = 500
reopen_initial_ms = 100
reopen_max_ms = 1000

[sources.channels]
"0" = {{ metric = {_s(MCU_CHANNELS[0])}, unit = "Nm3", medium = "gas" }}
"1" = {{ metric = {_s(MCU_CHANNELS[1])}, unit = "m3", medium = "water" }}

# A weighbridge indicator printing one line per weighed truck: an event and a reading each.
[[sources]]
type = "ascii"
name = {_s(SOURCES["weighbridge"])}
port = {{ path = {_s(str(links.weighbridge))}, baudrate = 9600 }}
mode = "streaming"
command = {_s(WEIGHBRIDGE_START)}
pattern = '{TICKET_PATTERN}'
values = [{{ group = "net", metric = "net_mass", unit = "kg", medium = "material", {_NET_TAGS} }}]
status_group = "status"
status_map = {{ O = "good", M = "uncertain" }}
checksum = {{ algorithm = "xor8", group = "cs" }}
on_silence = "check_port"  # a ticket printer is silent between trucks: no gap
reopen_initial_ms = 100
reopen_max_ms = 1000

[sources.event]
kind = {_s(TICKET_KIND)}
attrs = {{ ticket = "ticket", material = "material", lot = "lot", net_kg = "net" }}
"""
    if mqtt_port is not None:
        out += mqtt_source(mqtt_port)
    return out


MQTT_SOURCE_INDEX = 3  # sources[3] in agent.toml, when present


def mqtt_source(port: int) -> str:
    values = ", ".join(
        f"{{ metric = {_s(v)}, path = {_s(v)}, unit = {_s(u)} }}"
        for v, u in zip(MQTT_VALUES, ("Cel", "%"), strict=True)
    )
    return f"""
# Temperature and humidity sensors on the gateway's own Mosquitto broker.
[[sources]]
type = "mqtt"
name = {_s(SOURCES["mqtt"])}
url = "mqtt://127.0.0.1:{port}"
client_id = {_s(MQTT_CLIENT_ID)}

[[sources.rules]]
topic = {_s(MQTT_TOPIC_PREFIX + "/{device}")}
metric_template = "{{device}}.{{metric}}"
site = {_s(SITE)}
area = "hall-b"
process = "environment"
timestamp_path = "ts"
timestamp_format = "epoch_ms"
values = [{values}]
"""
