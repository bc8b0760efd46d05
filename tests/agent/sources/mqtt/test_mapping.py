"""MQTT message -> readings, pure: rules, payload times, every bad payload class, and a property
test that mapping never raises."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sources.mqtt.mapping import (
    REASONS,
    Mapper,
    MqttRule,
    compile_rule,
)
from agent.sources.mqtt.presets import PRESETS
from wire.models import MAX_NAME_LEN, TIME_UNTRUSTED, Quality, SeriesKey

NOW = 1_800_000_000_000  # 2027-01-15T08:00:00Z


def mapper(*rules: Any, **kwargs: int) -> Mapper:
    compiled = [compile_rule(msgspec.convert(r, MqttRule), PRESETS) for r in rules]
    return Mapper(compiled, **kwargs)


def values(m: Mapper, topic: str, payload: bytes, now_ms: int | None = NOW):
    out = m.map(topic, payload, now_ms=now_ms)
    return {k.metric: v for k, v, _q, _t in out.readings}, out


def reasons(out) -> list[str]:
    return [r for r, _ in out.problems]


# -- rules ------------------------------------------------------------------------------------

METER = {
    "topic": "plant/{site}/{area}/meter-{device}/data",
    "metric_template": "{device}.{metric}",
    "site": "{site}",
    "area": "{area}",
    "medium": "electricity",
    "values": [
        {"metric": "energy", "path": "readings[0].kwh", "unit": "kW.h"},
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
        (SeriesKey("17.energy", "kW.h", "p1", "hall-a", "", "electricity"), 1200.5),
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
