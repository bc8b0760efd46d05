"""MQTT message -> readings, pure: presets against real firmware payloads, rules, every bad payload.

The samples are quoted from the pages cited in agent/sources/mqtt/presets.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sources.mqtt.config import (
    MqttSourceConfig,
    mqtt_config_problems,
    parse_broker_url,
    resolve_mqtt_paths,
)
from agent.sources.mqtt.mapping import (
    REASONS,
    Mapper,
    MqttRule,
    RuleError,
    compile_rule,
)
from agent.sources.mqtt.presets import PRESETS
from wire.models import MAX_NAME_LEN, TIME_UNTRUSTED, Quality, SeriesKey

NOW = 1_800_000_000_000  # 2027-01-15T08:00:00Z

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


def mapper(*rules: Any, **kwargs: int) -> Mapper:
    compiled = [compile_rule(msgspec.convert(r, MqttRule), PRESETS) for r in rules]
    return Mapper(compiled, **kwargs)


def values(m: Mapper, topic: str, payload: bytes, now_ms: int | None = NOW):
    out = m.map(topic, payload, now_ms=now_ms)
    return {k.metric: v for k, v, _q, _t in out.readings}, out


def reasons(out) -> list[str]:
    return [r for r, _ in out.problems]


# -- presets against real payloads ------------------------------------------------------------


def test_tasmota_energy_plug():
    got, out = values(mapper({"preset": "tasmota"}), "tele/livingroom-lamp/SENSOR", TASMOTA_ENERGY)
    assert got == {
        "livingroom-lamp.energy_total": 3.705,
        "livingroom-lamp.energy_today": 0.026,
        "livingroom-lamp.power": 5.0,
        "livingroom-lamp.apparent_power": 5.0,
        "livingroom-lamp.reactive_power": 0.0,
        "livingroom-lamp.power_factor": 1.0,
        "livingroom-lamp.voltage": 233.0,
        "livingroom-lamp.current": 0.021,
    }
    assert out.problems == []
    units = {k.metric.split(".", 1)[1]: k.unit for k, *_ in out.readings}
    assert units["energy_total"] == "kWh"
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
    assert key == SeriesKey(prefix + "energy_total", "Wh", site="plant-1", medium="electricity")
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


# -- rules ------------------------------------------------------------------------------------

METER = {
    "topic": "plant/{site}/{area}/meter-{device}/data",
    "metric_template": "{device}.{metric}",
    "site": "{site}",
    "area": "{area}",
    "medium": "electricity",
    "values": [
        {"metric": "energy", "path": "readings[0].kwh", "unit": "kWh"},
        {"metric": "power", "path": "readings[-1].w", "unit": "kW", "scale": 0.001},
        {
            "metric": "breaker",
            "path": "status.breaker",
            "map": {"closed": 1, "open": 0, "tripped": 2},
        },
        {"metric": "online", "path": "status.online"},
    ],
}


def test_topic_levels_become_device_and_tags_and_paths_pick_values():
    m = mapper(METER)
    payload = (
        b'{"readings":[{"kwh":1200.5},{"w":3500}],"status":{"breaker":"tripped","online":true}}'
    )
    out = m.map("plant/p1/hall-a/meter-17/data", payload, now_ms=NOW)
    assert out.problems == []
    assert [(k, v) for k, v, _q, _t in out.readings] == [
        (SeriesKey("17.energy", "kWh", "p1", "hall-a", "", "electricity"), 1200.5),
        (SeriesKey("17.power", "kW", "p1", "hall-a", "", "electricity"), 3.5),
        (SeriesKey("17.breaker", "", "p1", "hall-a", "", "electricity"), 2.0),
        (SeriesKey("17.online", "", "p1", "hall-a", "", "electricity"), 1.0),
    ]
    assert m.filters == ["plant/+/+/+/data"]
    assert m.match("plant/p1/hall-a/pump-17/data") is None  # the level pattern must match


def test_one_bad_value_does_not_spoil_the_others():
    m = mapper(METER)
    payload = b'{"readings":[{"kwh":"lots"},{"w":[1]}],"status":{"breaker":"smoking"}}'
    out = m.map("plant/p1/a/meter-1/data", payload, now_ms=NOW)
    assert sorted(reasons(out)) == ["missing", "not_number", "unmapped", "wrong_type"]
    assert out.readings == []
    out = m.map(
        "plant/p1/a/meter-1/data", b'{"readings":[{"kwh":1}],"status":{"online":false}}', now_ms=NOW
    )
    assert [v for _k, v, _q, _t in out.readings] == [1.0, 0.0]
    assert sorted(reasons(out)) == ["missing", "missing"]


def test_hash_and_plus_wildcards_and_first_rule_wins():
    m = mapper(
        {"topic": "a/special", "values": [{"metric": "special"}]},
        {"topic": "a/#", "values": [{"metric": "any"}]},
        {"topic": "+/x", "values": [{"metric": "never"}]},
    )
    assert values(m, "a/special", b"1")[0] == {"special": 1.0}
    assert values(m, "a/b/c", b"2")[0] == {"any": 2.0}
    assert values(m, "a", b"3")[0] == {"any": 3.0}  # `#` includes the parent level
    assert values(m, "a/x", b"4")[0] == {"any": 4.0}
    assert m.match("$SYS/broker/uptime") is None
    assert m.filters == ["a/special", "a/#", "+/x"]


def test_wildcard_paths_make_one_series_per_key():
    m = mapper(
        {
            "topic": "multi/{device}",
            "metric_template": "{device}.{metric}",
            "values": [{"metric": "ch{key}", "path": "channels.*.p", "unit": "W"}],
        }
    )
    got, _ = values(m, "multi/m1", b'{"channels":[{"p":1},{"p":2},{"q":0},{"p":4}]}')
    assert got == {"m1.ch0": 1.0, "m1.ch1": 2.0, "m1.ch3": 4.0}


@pytest.mark.parametrize(
    ("raw", "fmt", "expected_ms"),
    [
        (b'{"t": 1800000000, "v": 1}', "auto", 1_800_000_000_000),
        (b'{"t": 1800000000.25, "v": 1}', "epoch_s", 1_800_000_000_250),
        (b'{"t": 1800000000123, "v": 1}', "auto", 1_800_000_000_123),
        (b'{"t": "1800000000123", "v": 1}', "epoch_ms", 1_800_000_000_123),
        (b'{"t": "2027-01-15T07:59:00Z", "v": 1}', "auto", NOW - 60_000),
        (b'{"t": "2027-01-15T08:59:00+01:00", "v": 1}', "iso8601", NOW - 60_000),
    ],
)
def test_payload_timestamps(raw, fmt, expected_ms):
    m = mapper(
        {
            "topic": "t",
            "timestamp_path": "t",
            "timestamp_format": fmt,
            "values": [{"metric": "v", "path": "v"}],
        }
    )
    out = m.map("t", raw, now_ms=NOW)
    assert out.problems == []
    assert [(q, ts) for _k, _v, q, ts in out.readings] == [(0, expected_ms)]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"t": "2027-01-15T07:59:00", "v": 1}', "no UTC offset"),  # Tasmota's local Time
        (b'{"t": 0, "v": 1}', "outside 2000..2100"),  # a device without a clock: 1970
        (b'{"t": 1800000900, "v": 1}', "ahead of the clock"),
        (b'{"t": 1790000000, "v": 1}', "old"),
        (b'{"t": "yesterday", "v": 1}', "not an ISO 8601 time"),
        (b'{"t": true, "v": 1}', "not a number"),
        (b'{"v": 1}', "no time at"),
    ],
)
def test_bad_payload_timestamps_keep_the_reading_flagged_at_arrival_time(raw, detail):
    m = mapper({"topic": "t", "timestamp_path": "t", "values": [{"metric": "v", "path": "v"}]})
    out = m.map("t", raw, now_ms=NOW)
    assert [(v, q, ts) for _k, v, q, ts in out.readings] == [(1.0, Quality.UNCERTAIN, None)]
    assert reasons(out) == ["bad_timestamp"]
    assert detail in out.problems[0][1]


def test_naive_times_can_be_declared_utc_and_an_untrusted_clock_flags_payload_times():
    m = mapper(
        {
            "topic": "t",
            "timestamp_path": "t",
            "timestamp_naive": "utc",
            "values": [{"metric": "v", "path": "v"}],
        }
    )
    out = m.map("t", b'{"t": "2027-01-15T07:59:00", "v": 1}', now_ms=NOW)
    assert [(q, ts) for _k, _v, q, ts in out.readings] == [(0, NOW - 60_000)]
    # The agent's clock is untrusted: the device's time cannot be checked, so it is flagged.
    out = m.map("t", b'{"t": "2031-01-15T07:59:00", "v": 1}', now_ms=None)
    assert out.readings[0][2] == TIME_UNTRUSTED
    assert out.problems == []


# -- bad payloads: each class counted by reason, never an exception ---------------------------

PLAIN = {"topic": "p/{device}", "values": [{"metric": "{device}.v"}]}
JSON = {"topic": "j/{device}", "values": [{"metric": "{device}.v", "path": "a.b"}]}


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("j/d", b"not json at all", "not_json"),
        ("j/d", b'{"a": {"b": 1}', "not_json"),
        ("j/d", b"", "not_json"),
        ("j/d", b'{"a": {"b": NaN}}', "non_finite"),
        ("j/d", b'{"a": {"b": Infinity}}', "non_finite"),
        ("j/d", b'{"a": {"b": -Infinity}}', "non_finite"),
        ("j/d", b'{"a": {"b": 1e999}}', "non_finite"),
        ("j/d", b'{"a": {"b": {"c": 1}}}', "wrong_type"),
        ("j/d", b'{"a": {"b": [1, 2]}}', "wrong_type"),
        ("j/d", b'{"a": {"b": "eleven"}}', "not_number"),
        ("j/d", b'{"a": {"b": null}}', "missing"),
        ("j/d", b'{"a": 5}', "missing"),
        ("j/d", b"[1, 2, 3]", "missing"),
        ("j/d", b"\x00\xff\xfe\x80binary\x01garbage", "binary"),
        ("j/d", b"[" * 100_000 + b"]" * 100_000, "too_large"),
        ("j/d", b"[" * 20_000 + b"]" * 20_000, "too_deep"),
        ("j/d", b'{"a": {"b": 1}, "pad": "' + b"x" * 70_000 + b'"}', "too_large"),
        ("p/d", b"NaN", "non_finite"),
        ("p/d", b"inf", "non_finite"),
        ("p/d", b"-Infinity", "non_finite"),
        ("p/d", b"twelve", "not_number"),
        ("p/d", b"", "not_number"),
        ("p/d", b"\xff\xfe", "binary"),
        ("p/d", b"1e999", "non_finite"),
        ("nobody/listens/here", b"1", "unknown_topic"),
        ("p/" + "x" * 200, b"1", "bad_name"),
        ("p/bad\x01name", b"1", "bad_name"),
    ],
)
def test_every_bad_payload_class_is_named(topic, payload, reason):
    m = mapper(PLAIN, JSON, max_payload_bytes=65536)
    out = m.map(topic, payload, now_ms=NOW)
    assert out.readings == []
    assert reasons(out) == [reason]
    assert reason in REASONS


def test_numeric_text_is_a_number_and_surrounding_space_is_ignored():
    m = mapper(PLAIN, JSON)
    assert values(m, "p/d", b" 21.5\n")[0] == {"d.v": 21.5}
    assert values(m, "j/d", b'{"a": {"b": "21.5"}}')[0] == {"d.v": 21.5}
    assert values(m, "j/d", b'{"a": {"b": 7}}')[0] == {"d.v": 7.0}


def test_too_many_values_from_one_message_is_capped():
    m = mapper(
        {"topic": "w", "values": [{"metric": "c{key}", "path": "*"}]}, max_readings_per_message=10
    )
    out = m.map("w", b"[" + b",".join(b"1" for _ in range(50)) + b"]", now_ms=NOW)
    assert len(out.readings) == 10
    assert reasons(out) == ["too_many_values"]


@settings(max_examples=300, deadline=None)
@given(
    topic=st.text(max_size=60),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
            lambda c: (
                st.lists(c, max_size=4)
                | st.dictionaries(st.sampled_from(["a", "b", "*", "0"]), c, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: msgspec.json.encode(v) if not _has_nan(v) else b"NaN"),
    ),
)
def test_mapping_never_raises_and_only_makes_valid_series(topic, payload):
    m = _FUZZ
    out = m.map("j/" + topic, payload, now_ms=NOW)
    for key, value, quality, ts in out.readings:
        assert key.metric
        assert len(key.metric) <= MAX_NAME_LEN
        assert key.metric.isprintable()
        assert all(len(t) <= MAX_NAME_LEN and t.isprintable() for t in key.tags().values())
        assert math.isfinite(value)
        assert ts is None or isinstance(ts, int)
        assert quality in (0, Quality.UNCERTAIN)
    assert all(r in REASONS for r, _ in out.problems)


def _has_nan(v) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, list):
        return any(_has_nan(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    return False


_FUZZ = mapper(
    {
        "topic": "j/#",
        "timestamp_path": "b",
        "values": [
            {"metric": "a", "path": "a", "when_missing": "skip"},
            {"metric": "k{key}", "path": "*.a"},
            {"metric": "i", "path": "[0][-1]", "map": {"x": 1}},
        ],
    }
)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"values": [{"metric": "v"}]}, "topic", "missing"),
        ({"topic": "a/b"}, "values", "no values"),
        ({"preset": "tasmoto"}, "preset", "unknown preset 'tasmoto'"),
        ({"topic": "a/#/b", "values": [{"metric": "v"}]}, "topic", "last level"),
        ({"topic": "a/b+", "values": [{"metric": "v"}]}, "topic", "whole level"),
        ({"topic": "a/{x}/{x}", "values": [{"metric": "v"}]}, "topic", "twice"),
        ({"topic": "a/{1x}", "values": [{"metric": "v"}]}, "topic", "a name"),
        ({"topic": "a/{x", "values": [{"metric": "v"}]}, "topic", "unbalanced"),
        ({"topic": "a/{x}", "values": [{"metric": "{y}.v"}]}, "values[0].metric", "{y}"),
        (
            {"topic": "a", "values": [{"metric": "v{key}", "path": "a"}]},
            "values[0].metric",
            "{key}",
        ),
        (
            {"topic": "a", "values": [{"metric": "v", "path": "a..b"}]},
            "values[0].path",
            "empty key",
        ),
        (
            {"topic": "a", "values": [{"metric": "v", "path": "a[x]"}]},
            "values[0].path",
            "bad index",
        ),
        ({"topic": "a", "values": [{"metric": "v", "path": "*.*"}]}, "values[0].path", "one `*`"),
        ({"topic": "a", "area": "{nope}", "values": [{"metric": "v"}]}, "area", "{nope}"),
        (
            {"topic": "a", "timestamp_path": "*", "values": [{"metric": "v"}]},
            "timestamp_path",
            "wildcard",
        ),
    ],
)
def test_rule_errors_name_the_key(rule, field, words):
    with pytest.raises(RuleError) as info:
        compile_rule(msgspec.convert(rule, MqttRule), PRESETS)
    assert info.value.field == field
    assert words in str(info.value)


def test_source_config_problems_are_reported_with_their_path(tmp_path):
    cfg = msgspec.convert(
        {
            "type": "mqtt",
            "url": "mqtt://user:secret@broker:1883",
            "password_file": "pw",
            "ca_file": "ca.pem",
            "cert_file": "c.pem",
            "client_id": "has space",
            "rules": [{"preset": "tasmota"}, {"topic": "a/#/b", "values": [{"metric": "v"}]}],
        },
        MqttSourceConfig,
    )
    assert mqtt_config_problems(cfg, "sources[1]") == [
        "sources[1].url: must not carry credentials: use username and password_file",
        "sources[1].cert_file: cert_file and key_file go together",
        "sources[1].password_file: needs a username",
        "sources[1].client_id: printable ASCII without spaces, please",
        "sources[1].rules[1].topic: `#` must be the last level",
    ]
    resolved = resolve_mqtt_paths(cfg, Path("/etc/edge-agent"))
    assert resolved.password_file == "/etc/edge-agent/pw"
    assert resolved.ca_file == "/etc/edge-agent/ca.pem"
    with pytest.raises(msgspec.ValidationError, match="colour"):
        msgspec.convert({"type": "mqtt", "rules": [], "colour": 1}, MqttSourceConfig)
    empty = msgspec.convert({"type": "mqtt", "rules": []}, MqttSourceConfig)
    assert mqtt_config_problems(empty, "s") == ["s.rules: at least one rule (or preset) is needed"]
    slow = msgspec.convert(
        {"type": "mqtt", "rules": [{"preset": "tasmota"}], "reconnect_initial_ms": 60_000},
        MqttSourceConfig,
    )
    assert mqtt_config_problems(slow, "s") == [
        "s.reconnect_initial_ms: 60000 ms is more than reconnect_max_s (30 s)"
    ]


def test_broker_urls():
    assert parse_broker_url("mqtt://127.0.0.1").port == 1883
    assert parse_broker_url("mqtts://broker.plant").port == 8883
    assert parse_broker_url("mqtts://broker.plant:9000").tls
    for bad in ("http://x", "mqtt://", "mqtt://h/path", "mqtt://h:99999"):
        with pytest.raises(ValueError, match=r"."):
            parse_broker_url(bad)


# -- the redelivery record -------------------------------------------------------------------


def test_unacknowledged_entries_are_kept_however_many_come_after(tmp_path):
    from agent.sources.mqtt.seen import Seen, fingerprint

    seen = Seen(tmp_path / "s", b"broker", keep_acked=4, enabled=True)
    first = seen.add(1, fingerprint("t", b"1"), gen=1)
    assert first is not None
    for mid in range(2, 50):  # a broker overshooting its window: all unacknowledged
        seen.add(mid, fingerprint("t", str(mid).encode()), gen=1)
    assert seen.match(1, fingerprint("t", b"1")) is first
    assert seen.match(1, fingerprint("t", b"other")) is None
    for mid in range(1, 50):
        entry = seen.match(mid, fingerprint("t", str(mid).encode()))
        assert entry is not None
        seen.acked(mid, entry)
    assert [m for m, _ in seen.snapshot()] == [46, 47, 48, 49]  # only the last 4 acked stay


def test_a_fresh_message_ends_the_redeliveries_of_older_connections(tmp_path):
    from agent.sources.mqtt.seen import Seen

    seen = Seen(None, b"broker", keep_acked=10, enabled=True)
    seen.add(7, 70, gen=1)  # handled, never acknowledged: its connection died
    acked = seen.add(8, 80, gen=1)
    assert acked is not None
    seen.acked(8, acked)
    seen.fresh(gen=2)  # connection 2 sent something new: 7 is not coming back
    assert seen.match(7, 70) is None
    assert seen.match(8, 80) is acked  # its PUBACK may still have been lost


def test_the_record_survives_a_restart_and_refuses_a_foreign_or_torn_file(tmp_path):
    from agent.sources.mqtt.seen import Seen

    path = tmp_path / "mq.mqtt-seen"
    seen = Seen(path, b"mqtt://a\0id", keep_acked=10, enabled=True)
    for mid in (1, 2, 3):
        seen.add(mid, mid * 11, gen=1)
    seen.persist(seen.snapshot())
    seen.close()
    again = Seen(path, b"mqtt://a\0id", keep_acked=10, enabled=True)
    assert again.load()
    assert [again.match(m, m * 11) is not None for m in (1, 2, 3)] == [True, True, True]
    other = Seen(path, b"mqtt://b\0id", keep_acked=10, enabled=True)
    assert not other.load()
    assert other.match(1, 11) is None
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # torn: the CRC no longer matches, nothing is trusted
    path.write_bytes(bytes(data))
    torn = Seen(path, b"mqtt://a\0id", keep_acked=10, enabled=True)
    torn.load()
    assert torn.match(3, 33) is None
