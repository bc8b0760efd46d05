"""What a value declares (unit, range, kind, medium) and what one bad field may spoil (issue 13):
one NaN drops only its value, impossible values are BAD with a counted reason, counters are named
by their kind, media come per value, rule and device."""

from __future__ import annotations

import pytest

from agent.sources.mqtt.mapping import RuleError
from tests.agent.sources.mqtt.test_mapping import NOW, mapper, reasons, values
from wire.models import TIME_UNTRUSTED, Quality

TWO = {
    "topic": "j/{device}",
    "metric_template": "{device}.{metric}",
    "values": [
        {"metric": "temperature", "path": "t", "unit": "Cel"},
        {"metric": "humidity", "path": "h", "unit": "%"},
    ],
}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"t": NaN, "h": 45.5}',
        b'{"t": Infinity, "h": 45.5}',
        b'{"t": -Infinity, "h": 45.5}',
        b'{"t": 1e999, "h": 45.5}',
        b'{"h": 45.5, "t": NaN, "note": "NaN in a string stays text"}',
    ],
)
def test_one_non_finite_field_drops_only_that_value(payload: bytes) -> None:
    """Observed: a NaN in one field dropped the whole message (docs/mqtt.md said: the value)."""
    got, out = values(mapper(TWO), "j/probe", payload)
    assert got == {"probe.humidity": 45.5}
    assert reasons(out) == ["non_finite"]


def test_a_string_that_spells_nan_is_not_a_number_token() -> None:
    got, out = values(mapper(TWO), "j/probe", b'{"t": "x NaN y", "h": 1e999}')
    assert got == {}
    assert sorted(reasons(out)) == ["non_finite", "not_number"]


def test_broken_json_with_nan_is_still_not_json() -> None:
    assert reasons(values(mapper(TWO), "j/probe", b'{"t": NaN, "h": ')[1]) == ["non_finite"]


@pytest.mark.parametrize(
    ("payload", "metric", "value"),
    [
        (b'{"temperature": -273.16}', "s.temperature", -273.16),
        (b'{"humidity": 140.5}', "s.humidity", 140.5),
        (b'{"battery": 255}', "s.battery", 255.0),
        (b'{"power": -1e9}', "s.power", -1e9),
        (b'{"energy": -1}', "s.energy", -1.0),
    ],
)
def test_impossible_values_are_bad_with_a_reason(payload: bytes, metric: str, value: float) -> None:
    """Observed: −273.16 °C, 140.5 %RH, battery 255 %, −1e9 W, −1 kWh were stored GOOD."""
    out = mapper({"preset": "zigbee2mqtt"}).map("zigbee2mqtt/s", payload, now_ms=NOW)
    assert [(k.metric, v, q) for k, v, q, _ in out.readings] == [(metric, value, Quality.BAD)]
    assert reasons(out) == ["out_of_range"]


def test_out_of_range_keeps_the_untrusted_time_bit() -> None:
    rule = {**TWO, "timestamp_path": "ts"}
    out = mapper(rule).map("j/p", b'{"t": 20, "h": 101, "ts": 1800000000}', now_ms=None)
    quality = {k.metric: q for k, _v, q, _ in out.readings}
    assert quality == {"p.temperature": TIME_UNTRUSTED, "p.humidity": Quality.BAD | TIME_UNTRUSTED}


def test_a_rule_narrows_a_range() -> None:
    rule = {
        "topic": "j/{device}",
        "values": [{"metric": "flow", "path": "f", "unit": "m3/h", "min": 0, "max": 50}],
    }
    out = mapper(rule).map("j/p", b'{"f": 51}', now_ms=NOW)
    assert [q for _k, _v, q, _ in out.readings] == [Quality.BAD]


@pytest.mark.parametrize(
    ("value", "key", "problem"),
    [
        ({"unit": "kWh"}, "values[0].unit", "'kW.h'"),
        ({"unit": "°C"}, "values[0].unit", "'Cel'"),
        ({"unit": "kW.h", "metric": "energy_today"}, "values[0].kind", "not cumulative"),
        ({"unit": "kW.h", "kind": "resetting"}, "values[0].kind", "needs a metric ending"),
        (
            {"unit": "kW.h", "metric": "{key}", "path": "*", "kind": "resetting"},
            "values[0].kind",
            "literal",
        ),
        ({"unit": "%", "min": 120}, "values[0].min", "above the physical limit"),
        ({"when": {"nope": "x"}}, "values[0].when", "not a capture"),
    ],
)
def test_declarations_are_checked(value: dict[str, object], key: str, problem: str) -> None:
    rule = {"topic": "j/{device}", "values": [{"metric": "m", "path": "v", **value}]}
    with pytest.raises(RuleError, match=problem) as caught:
        mapper(rule)
    assert caught.value.field == key


def test_presets_give_each_value_its_medium_and_rules_and_devices_override() -> None:
    """Observed: one zigbee2mqtt rule could not give plugs and climate sensors different media,
    and the energy of Tasmota and Zigbee2MQTT plugs landed under "(no medium)"."""
    payload = b'{"temperature": 4.5, "power": 12, "energy": 3.5}'
    media = {
        k.metric: k.medium
        for k, *_ in mapper({"preset": "zigbee2mqtt"})
        .map("zigbee2mqtt/d", payload, now_ms=NOW)
        .readings
    }
    assert media == {"d.temperature": "", "d.power": "electricity", "d.energy": "electricity"}
    rule = {"preset": "zigbee2mqtt", "medium_by_device": {"boiler-plug": "heat"}}
    by_device = mapper(rule)
    out = by_device.map("zigbee2mqtt/boiler-plug", payload, now_ms=NOW)
    assert {k.medium for k, *_ in out.readings} == {"heat"}
    out = by_device.map("zigbee2mqtt/other", payload, now_ms=NOW)
    assert {k.metric: k.medium for k, *_ in out.readings}["other.power"] == "electricity"
    out = mapper({"preset": "zigbee2mqtt", "medium": "air"}).map(
        "zigbee2mqtt/d", payload, now_ms=NOW
    )
    assert {k.medium for k, *_ in out.readings} == {"air"}
    out = mapper({"preset": "tasmota"}).map(
        "tele/plug/SENSOR", b'{"ENERGY": {"Total": 1.5, "Power": 3}}', now_ms=NOW
    )
    assert {k.medium for k, *_ in out.readings} == {"electricity"}
    with pytest.raises(RuleError, match="device"):
        mapper({"topic": "x/+", "values": [{"metric": "m"}], "medium_by_device": {"a": "b"}})
