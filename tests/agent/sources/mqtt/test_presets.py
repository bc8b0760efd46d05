"""The presets against real firmware payloads.

The samples are quoted from the pages cited in agent/sources/mqtt/presets.py.
"""

from __future__ import annotations

from tests.agent.sources.mqtt.test_mapping import mapper, reasons, values
from wire.models import SeriesKey

# blog.mylocalbytes.com/kb/2022-01-10/LB-PM-Power-Monitoring: tele/livingroom-lamp/SENSOR
TASMOTA_ENERGY = (
    b'{"Time": "2022-01-11T21:57:38", "ENERGY": {"TotalStartTime": "2020-10-21T22:15:00", '
    b'"Total": 3.705, "Yesterday": 0.028, "Today": 0.026, "Period": 1, "Power": 5, '
    b'"ApparentPower": 5, "ReactivePower": 0, "Factor": 1.00, "Voltage": 233, "Current": 0.021}}'
)
# github.com/robertklep/name.klep.sonoff/issues/6: tele/TH16/SENSOR
TASMOTA_AM2301 = (
    b'{"Time":"2018-03-02T18:25:03","AM2301":{"Temperature":22.6,"Humidity":32.4},"TempUnit":"C"}'
)
# shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch: the documented status example
# (its head verbatim; aenergy and temperature filled in with the documented attributes).
SHELLY_SWITCH = (
    b'{"id": 0, "source": "timer", "output": false, "timer_started_at": 1626942399.36, '
    b'"timer_duration": 60, "apower": 0, "voltage": 237.571, "aenergy": {"total": 14.093, '
    b'"by_minute": [0, 0, 0], "minute_ts": 1626942413}, "temperature": {"tC": null, "tF": null}}'
)
# zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html and a 2018 bridge log
Z2M_CLIMATE = b'{"temperature": 27.34, "humidity": 44.72}'
Z2M_OCCUPANCY = b'{"occupancy": true}'
Z2M_BULB = b'{"state": "ON", "brightness": 215, "color_temp": 325}'
Z2M_LEAK_OLD = b'{"battery":"100.00","voltage":3045,"linkquality":99,"water_leak":false}'
Z2M_ACTION = b'{"action": "single"}'


# -- presets against real payloads ------------------------------------------------------------


def test_tasmota_energy_plug():
    got, out = values(mapper({"preset": "tasmota"}), "tele/livingroom-lamp/SENSOR", TASMOTA_ENERGY)
    assert got == {
        "livingroom-lamp.energy_total": 3.705,
        "livingroom-lamp.energy_today": 0.026,
        "livingroom-lamp.energy_yesterday": 0.028,
        "livingroom-lamp.energy_period": 1.0,
        "livingroom-lamp.power": 5.0,
        "livingroom-lamp.apparent_power": 5.0,
        "livingroom-lamp.reactive_power": 0.0,
        "livingroom-lamp.power_factor": 1.0,
        "livingroom-lamp.voltage": 233.0,
        "livingroom-lamp.current": 0.021,
    }
    assert out.problems == []
    units = {k.metric.split(".", 1)[1]: k.unit for k, *_ in out.readings}
    assert units["energy_total"] == "kW.h"
    assert units["energy_period"] == "W.h"
    assert units["power"] == "W"
    assert units["current"] == "A"
    assert all(ts is None and q == 0 for _k, _v, q, ts in out.readings)  # arrival time


def test_tasmota_climate_sensor_named_by_its_driver():
    got, out = values(mapper({"preset": "tasmota"}), "tele/TH16/SENSOR", TASMOTA_AM2301)
    assert got == {"TH16.AM2301.temperature": 22.6, "TH16.AM2301.humidity": 32.4}
    assert out.problems == []


def test_shelly_gen2_switch_status():
    m = mapper({"preset": "shelly-gen2-switch", "site": "plant-1"})
    got, out = values(m, "shellyplus1pm-a8032ab12345/status/switch:0", SHELLY_SWITCH)
    prefix = "shellyplus1pm-a8032ab12345.switch0."
    assert got == {
        prefix + "power": 0.0,
        prefix + "voltage": 237.571,
        prefix + "energy_total": 14.093,
        prefix + "output": 0.0,
    }
    assert out.problems == []  # temperature null: not available, skipped
    key = next(k for k, *_ in out.readings if k.metric.endswith("energy_total"))
    assert key == SeriesKey(prefix + "energy_total", "W.h", site="plant-1", medium="electricity")
    assert mapper({"preset": "shelly-gen2-switch"}).match("x/status/input:0") is None


def test_zigbee2mqtt_devices():
    m = mapper({"preset": "zigbee2mqtt", "area": "cold-store"})
    got, out = values(m, "zigbee2mqtt/0x00158d0001", Z2M_CLIMATE)
    assert got == {"0x00158d0001.temperature": 27.34, "0x00158d0001.humidity": 44.72}
    assert {k.area for k, *_ in out.readings} == {"cold-store"}
    assert values(m, "zigbee2mqtt/hall", Z2M_OCCUPANCY)[0] == {"hall.occupancy": 1.0}
    assert values(m, "zigbee2mqtt/lamp", Z2M_BULB)[0] == {"lamp.state": 1.0}
    got, out = values(m, "zigbee2mqtt/leak", Z2M_LEAK_OLD)
    assert got == {
        "leak.battery": 100.0,
        "leak.voltage": 3045.0,
        "leak.linkquality": 99.0,
        "leak.water_leak": 0.0,
    }
    got, out = values(m, "zigbee2mqtt/button", Z2M_ACTION)
    assert got == {}
    assert reasons(out) == ["no_values"]
    assert m.match("zigbee2mqtt/bridge/state") is None  # the bridge's own topics are not devices


def test_esphome_state_topics():
    m = mapper({"preset": "esphome-sensor"}, {"preset": "esphome-binary-sensor"})
    assert values(m, "boiler/sensor/flow_temperature/state", b"61.25")[0] == {
        "boiler.flow_temperature": 61.25
    }
    assert values(m, "boiler/binary_sensor/pump/state", b"ON")[0] == {"boiler.pump": 1.0}
    assert values(m, "boiler/binary_sensor/pump/state", b"OFF")[0] == {"boiler.pump": 0.0}
    assert reasons(values(m, "boiler/sensor/flow_temperature/state", b"nan")[1]) == ["non_finite"]


def test_a_rule_overrides_the_presets_topic_and_adds_values():
    m = mapper(
        {
            "preset": "zigbee2mqtt",
            "topic": "z2m/{area}/{device}",
            "area": "{area}",
            "values": [{"metric": "brightness", "path": "brightness", "when_missing": "skip"}],
        }
    )
    got, out = values(m, "z2m/hall-b/lamp", Z2M_BULB)
    assert got == {"lamp.state": 1.0, "lamp.brightness": 215.0}
    assert {k.area for k, *_ in out.readings} == {"hall-b"}
