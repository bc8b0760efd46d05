"""Presets: the telemetry formats of popular open-source device firmwares, as mapping rules.

A config names one instead of writing paths (`preset = "tasmota"`); the rule's own keys override
the preset's (`topic` for a changed base topic, tags, `metric_template`) and its own `values` are
added after the preset's. Every value of a preset is optional (`when_missing = "skip"`): devices
publish only what their hardware measures. Series are named `<device>.<metric>`, the device
being the topic level the firmware puts its name in.

Sources (payload shapes and units; the test samples in tests/agent/sources/mqtt/test_mapping.py are
quoted from these pages):
- Tasmota: `tele/<topic>/SENSOR` every TelePeriod; ENERGY object of power-monitoring plugs
  (Total/Today kWh, Power W, ApparentPower VA, ReactivePower var, Factor, Voltage V, Current A):
  https://blog.mylocalbytes.com/kb/2022-01-10/LB-PM-Power-Monitoring (payload captured from a
  Tasmota plug), units as in Tasmota's Home Assistant discovery (`unit_of_meas` "kWh" for
  ENERGY.Total, https://pastebin.com/XiaKgnUt) and https://github.com/PA0DEV/Tasmota-adapter;
  sensor objects named by driver, e.g. `"AM2301":{"Temperature":22.6,"Humidity":32.4}` with
  `"TempUnit":"C"` (https://github.com/robertklep/name.klep.sonoff/issues/6). `Time` is local
  time without an offset, so arrival time is used.
- Shelly Gen2+ (Plus/Pro): with "Generic status update over MQTT" (`status_ntf`) the whole
  component status goes to `<topic_prefix>/status/<component>:<id>`, prefix defaulting to the
  device id (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Mqtt). Switch status:
  `apower` W, `voltage` V, `current` A, `aenergy.total` Wh, `temperature.tC` (null when not
  available), `output` boolean (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch).
- Zigbee2MQTT: `zigbee2mqtt/<friendly_name>`, one JSON object per device state, keys from the
  device's "exposes" (https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html):
  `{"temperature":27.34,"humidity":44.72}`, `{"occupancy":true}`, `{"state":"ON",...}`; older
  versions sent `"battery":"100.00"` as text (numeric text is accepted); `voltage` is mV on
  battery devices and V on mains devices, so the preset gives it no unit. Friendly names with a `/`
  need their own `topic`, e.g. `zigbee2mqtt/{area}/{device}`.
- ESPHome: `<topic_prefix>/<component_type>/<object_id>/state`, prefix defaulting to the node
  name; sensors publish the number as plain text, binary sensors `ON`/`OFF`
  (https://esphome.io/components/mqtt.html; `get_default_topic_for_` in
  https://esphome.io/api/mqtt__component_8cpp_source). Units are only in discovery messages, so
  the preset leaves them empty: add `values` with a `unit` per object id if you need them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from agent.sources.mqtt.mapping import MqttRule


def _v(metric: str, path: str, unit: str = "", **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "path": path, "unit": unit, "when_missing": "skip", **extra}


_ON_OFF = {"ON": 1.0, "OFF": 0.0, "true": 1.0, "false": 0.0}

_PRESETS: dict[str, dict[str, Any]] = {
    "tasmota": {
        "topic": "tele/{device}/SENSOR",
        "metric_template": "{device}.{metric}",
        "values": [
            _v("energy_total", "ENERGY.Total", "kWh"),
            _v("energy_today", "ENERGY.Today", "kWh"),
            _v("power", "ENERGY.Power", "W"),
            _v("apparent_power", "ENERGY.ApparentPower", "VA"),
            _v("reactive_power", "ENERGY.ReactivePower", "var"),
            _v("power_factor", "ENERGY.Factor"),
            _v("voltage", "ENERGY.Voltage", "V"),
            _v("current", "ENERGY.Current", "A"),
            # Environment sensors: one object per driver ("AM2301", "BME280", "DS18B20-1", ...).
            _v("{key}.temperature", "*.Temperature", "°C"),
            _v("{key}.humidity", "*.Humidity", "%"),
            _v("{key}.dew_point", "*.DewPoint", "°C"),
            _v("{key}.pressure", "*.Pressure", "hPa"),
            _v("{key}.illuminance", "*.Illuminance", "lx"),
            _v("{key}.co2", "*.CarbonDioxide", "ppm"),
        ],
    },
    "shelly-gen2-switch": {
        "topic": "{device}/status/switch:{channel}",
        "metric_template": "{device}.switch{channel}.{metric}",
        "medium": "electricity",
        "values": [
            _v("power", "apower", "W"),
            _v("voltage", "voltage", "V"),
            _v("current", "current", "A"),
            _v("frequency", "freq", "Hz"),
            _v("energy_total", "aenergy.total", "Wh"),
            _v("temperature", "temperature.tC", "°C"),
            _v("output", "output"),
        ],
    },
    "zigbee2mqtt": {
        "topic": "zigbee2mqtt/{device}",
        "metric_template": "{device}.{metric}",
        "values": [
            _v("temperature", "temperature", "°C"),
            _v("humidity", "humidity", "%"),
            _v("pressure", "pressure", "hPa"),
            _v("co2", "co2", "ppm"),
            _v("illuminance", "illuminance_lux", "lx"),
            _v("power", "power", "W"),
            _v("energy", "energy", "kWh"),
            # mV on battery devices, V on mains devices: no unit rather than a wrong one.
            _v("voltage", "voltage"),
            _v("current", "current", "A"),
            _v("battery", "battery", "%"),
            _v("state", "state", "", map=_ON_OFF),
            _v("contact", "contact"),
            _v("occupancy", "occupancy"),
            _v("water_leak", "water_leak"),
            _v("linkquality", "linkquality", "lqi"),
        ],
    },
    "esphome-sensor": {
        "topic": "{device}/sensor/{object}/state",
        "metric_template": "{device}.{object}",
        "values": [_v("value", "")],
    },
    "esphome-binary-sensor": {
        "topic": "{device}/binary_sensor/{object}/state",
        "metric_template": "{device}.{object}",
        "values": [_v("value", "", map=_ON_OFF)],
    },
}

PRESETS: dict[str, MqttRule] = {
    name: msgspec.convert(body, MqttRule) for name, body in _PRESETS.items()
}
