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


def _e(metric: str, path: str, unit: str = "", **extra: Any) -> dict[str, Any]:
    """An electrical value: its medium is electricity unless the rule or device says otherwise."""
    return _v(metric, path, unit, medium="electricity", **extra)


def _topic(quantity: str, metric: str, unit: str = "", **extra: Any) -> dict[str, Any]:
    """A Shelly Gen1 value: the whole plain-text payload of the topic ending in `quantity`."""
    return _v(metric, "", unit, when={"quantity": quantity}, **extra)


_ON_OFF = {"ON": 1.0, "OFF": 0.0, "true": 1.0, "false": 0.0}
_RMS = {"min": 0.0}  # an RMS voltage or current is never negative
_PF = {"min": -1.0, "max": 1.0}
# These firmwares run plugs, relays and small meters: a power beyond ±1 MW is a damaged value.
_P = {"min": -1e6, "max": 1e6}
_CH = {"array": "channels"}  # multi-channel devices send an array: one series per channel

_PRESETS: dict[str, dict[str, Any]] = {
    "tasmota": {
        "topic": "tele/{device}/SENSOR",
        "metric_template": "{device}.{metric}",
        "values": [
            _e("energy_total", "ENERGY.Total", "kW.h", **_CH),
            # Today resets at midnight, Yesterday is the day before's, Period the energy since the
            # last telemetry (Wh): none of them is a running total.
            _e("energy_today", "ENERGY.Today", "kW.h", kind="resetting", **_CH),
            _e("energy_yesterday", "ENERGY.Yesterday", "kW.h", kind="gauge", **_CH),
            _e("energy_period", "ENERGY.Period", "W.h", kind="resetting", **_CH),
            _e("power", "ENERGY.Power", "W", **_P, **_CH),
            _e("apparent_power", "ENERGY.ApparentPower", "V.A", **_P, **_CH),
            _e("reactive_power", "ENERGY.ReactivePower", "var", **_P, **_CH),
            _e("power_factor", "ENERGY.Factor", "1", **_PF, **_CH),
            _e("voltage", "ENERGY.Voltage", "V", **_RMS, **_CH),
            _e("current", "ENERGY.Current", "A", **_RMS, **_CH),
            # Environment sensors: one object per driver ("AM2301", "BME280", "DS18B20-1", ...).
            # Temperatures in Cel: the payload's TempUnit is "C" unless SetOption8 was changed.
            _v("{key}.temperature", "*.Temperature", "Cel"),
            _v("{key}.humidity", "*.Humidity", "%"),
            _v("{key}.dew_point", "*.DewPoint", "Cel"),
            _v("{key}.pressure", "*.Pressure", "hPa"),
            _v("{key}.illuminance", "*.Illuminance", "lx"),
            _v("{key}.co2", "*.CarbonDioxide", "[ppm]"),
        ],
    },
    "shelly-gen1-relay": {
        "topic": "shellies/{device}/relay/{channel}/{quantity}",
        "metric_template": "{device}.relay{channel}.{metric}",
        "values": [
            _topic("power", "power", "W", medium="electricity", **_P),
            # Watt-minutes since the device started (it restarts at 0 after a reboot).
            _topic("energy", "energy_total", "W.min", medium="electricity"),
        ],
    },
    "shelly-gen1-emeter": {
        "topic": "shellies/{device}/emeter/{channel}/{quantity}",
        "metric_template": "{device}.emeter{channel}.{metric}",
        "values": [
            _topic("power", "power", "W", medium="electricity", **_P),
            _topic("reactive_power", "reactive_power", "var", medium="electricity", **_P),
            _topic("pf", "power_factor", "1", medium="electricity", **_PF),
            _topic("voltage", "voltage", "V", medium="electricity", **_RMS),
            _topic("current", "current", "A", medium="electricity", **_RMS),
            # The persistent totals in Wh; `energy`/`returned_energy` (Watt-minutes since boot)
            # count the same energy again, so they are left out.
            _topic("total", "energy_total", "W.h", medium="electricity"),
            _topic("total_returned", "energy_export_total", "W.h", medium="electricity"),
        ],
    },
    "shelly-gen1-sensor": {
        "topic": "shellies/{device}/sensor/{quantity}",
        "metric_template": "{device}.{metric}",
        "values": [
            _topic("temperature", "temperature", "Cel"),
            _topic("humidity", "humidity", "%"),
            _topic("battery", "battery", "%"),
            _topic("lux", "illuminance", "lx"),
        ],
    },
    "shelly-gen2-switch": {
        "topic": "{device}/status/switch:{channel}",
        "metric_template": "{device}.switch{channel}.{metric}",
        "values": [
            _e("power", "apower", "W", **_P),
            _e("voltage", "voltage", "V", **_RMS),
            _e("current", "current", "A", **_RMS),
            _e("frequency", "freq", "Hz"),
            _e("energy_total", "aenergy.total", "W.h"),
            _v("temperature", "temperature.tC", "Cel"),
            _v("output", "output"),
        ],
    },
    "zigbee2mqtt": {
        "topic": "zigbee2mqtt/{device}",
        "metric_template": "{device}.{metric}",
        "values": [
            _v("temperature", "temperature", "Cel"),
            _v("humidity", "humidity", "%"),
            _v("pressure", "pressure", "hPa"),
            _v("co2", "co2", "[ppm]"),
            _v("illuminance", "illuminance_lux", "lx"),
            _e("power", "power", "W", **_P),
            _e("energy", "energy", "kW.h"),
            # mV on battery devices, V on mains devices: no unit rather than a wrong one.
            _v("voltage", "voltage"),
            _e("current", "current", "A", **_RMS),
            _v("battery", "battery", "%"),
            _v("state", "state", "", map=_ON_OFF),
            _v("contact", "contact"),
            _v("occupancy", "occupancy"),
            _v("water_leak", "water_leak"),
            _v("linkquality", "linkquality", "{lqi}"),
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
