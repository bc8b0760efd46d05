from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.errors import ConfigError
from firmware_bridge.modbus_config import (
    DeviceConfig,
    ModbusConfig,
    PointConfig,
    builtin_profiles,
    load_profile,
    resolve,
)
from firmware_bridge.modbus_map import (
    REGISTERS,
    DataType,
    Point,
    decode_words,
    encode_words,
    plan_requests,
)
from firmware_bridge.port_config import PortConfig
from wire.units import Kind, unit_problem

# (type, value, registers as they arrive for word_order/byte_order big/big, little/big,
# big/little, little/little). Bytes of the value, most significant first, are written ABCD….
VECTORS = [
    ("u16", 4660, [0x1234], [0x1234], [0x3412], [0x3412]),
    ("i16", -2, [0xFFFE], [0xFFFE], [0xFEFF], [0xFEFF]),
    (
        "u32",
        305419896,
        [0x1234, 0x5678],
        [0x5678, 0x1234],
        [0x3412, 0x7856],
        [0x7856, 0x3412],
    ),
    (
        "i32",
        -123456,
        [0xFFFE, 0x1DC0],
        [0x1DC0, 0xFFFE],
        [0xFEFF, 0xC01D],
        [0xC01D, 0xFEFF],
    ),
    (
        "float32",
        230.5,
        [0x4366, 0x8000],
        [0x8000, 0x4366],
        [0x6643, 0x0080],
        [0x0080, 0x6643],
    ),
    (
        "float64",
        12345.678,
        [0x40C8, 0x1CD6, 0xC8B4, 0x3958],
        [0x3958, 0xC8B4, 0x1CD6, 0x40C8],
        [0xC840, 0xD61C, 0xB4C8, 0x5839],
        [0x5839, 0xB4C8, 0xD61C, 0xC840],
    ),
]
ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
CASES = [(dtype, value, regs[i], *ORDERS[i]) for dtype, value, *regs in VECTORS for i in range(4)]


@pytest.mark.parametrize(("dtype", "value", "words", "word_order", "byte_order"), CASES)
def test_decode_every_type_and_order(dtype, value, words, word_order, byte_order) -> None:
    assert decode_words(words, dtype, word_order, byte_order) == pytest.approx(value)
    assert encode_words(value, dtype, word_order, byte_order) == words


def test_decode_rejects_wrong_register_count() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_words([1], "float32")


def test_point_scale_offset_and_nan() -> None:
    p = Point("t", 3, 0, "i16", scale=0.1, offset=-40.0)
    assert p.value([250]) == pytest.approx(-15.0)
    nan = Point("f", 4, 0, "float32")
    assert math.isnan(nan.value([0x7FC0, 0x0000]))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["u16", "i16", "u32", "i32", "float32", "float64"]),
    st.sampled_from(ORDERS),
    st.data(),
)
def test_encode_decode_roundtrip(dtype, orders, data) -> None:
    bits = REGISTERS[dtype] * 16
    if dtype.startswith("float"):
        value = data.draw(
            st.floats(allow_nan=False, allow_infinity=False, width=32 if bits == 32 else 64)
        )
    elif dtype.startswith("u"):
        value = data.draw(st.integers(0, 2**bits - 1))
    else:
        value = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    words = encode_words(value, dtype, *orders)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode_words(words, dtype, *orders) == value


def pts(*spec: tuple[int, DataType]) -> list[Point]:
    return [Point(f"m{a}", 3, a, t) for a, t in spec]


def test_plan_merges_contiguous_registers() -> None:
    plan = plan_requests(1, pts((0, "float32"), (2, "float32"), (4, "u16"), (10, "u16")))
    assert [(r.address, r.count, len(r.points)) for r in plan] == [(0, 5, 3), (10, 1, 1)]


def test_plan_respects_max_registers_and_gap() -> None:
    points = pts(*((a, "float32") for a in range(0, 20, 2)))
    assert [(r.address, r.count) for r in plan_requests(1, points, max_registers=8)] == [
        (0, 8),
        (8, 8),
        (16, 4),
    ]
    gappy = pts((0, "u16"), (3, "u16"), (10, "u16"))
    assert len(plan_requests(1, gappy)) == 3
    assert [(r.address, r.count) for r in plan_requests(1, gappy, max_gap=2)] == [(0, 4), (10, 1)]


def test_plan_separates_function_codes_and_handles_overlap() -> None:
    points = [Point("a", 3, 0, "u32"), Point("b", 4, 0, "u32"), Point("c", 3, 1, "u16")]
    plan = plan_requests(5, points)
    assert [(r.function, r.address, r.count, r.unit) for r in plan] == [(3, 0, 2, 5), (4, 0, 2, 5)]
    words = [0x0001, 0x0002]
    decoded = dict((p.metric, v) for p, v in plan[0].decode(words))
    assert decoded == {"a": 65538.0, "c": 2.0}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 300), st.sampled_from(["u16", "u32", "float64"])), max_size=30
    ),
    st.integers(4, 125),
    st.integers(0, 5),
)
def test_plan_covers_every_point_within_limits(spec, max_registers, max_gap) -> None:
    points = [Point(f"m{i}", 3, a, t) for i, (a, t) in enumerate(spec)]
    plan = plan_requests(1, points, max_registers=max_registers, max_gap=max_gap)
    covered = [p for r in plan for p in r.points]
    assert sorted(p.metric for p in covered) == sorted(p.metric for p in points)
    for r in plan:
        assert r.count <= max_registers
        for p in r.points:
            assert r.address <= p.address
            assert p.end <= r.address + r.count


def test_builtin_profiles_load_and_cite_sources() -> None:
    names = builtin_profiles()
    assert {"eastron-sdm630", "tuf2000"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.profile.source
        assert profile.points


def test_device_uses_a_profile_by_name() -> None:
    cfg = ModbusConfig(
        transport="tcp",
        host="meter.local",
        devices=[
            DeviceConfig(name="main", unit_id=1, profile="eastron-sdm630", area="hall-1"),
            DeviceConfig(
                name="water",
                unit_id=2,
                profile="tuf2000",
                include=["flow_rate", "volume_positive"],
            ),
        ],
    )
    plans = {p.name: p for p in resolve(cfg)}
    main = plans["main"]
    energy = next(p for p in main.points if p.metric == "energy_import")
    assert (energy.function, energy.address, energy.dtype, energy.unit) == (
        4,
        0x48,
        "float32",
        "kW.h",
    )
    assert energy.medium == "electricity"
    assert energy.area == "hall-1"
    assert all(r.count <= 80 for r in main.requests)  # the SDM630's own limit
    water = plans["water"]
    assert [p.metric for p in water.points] == ["flow_rate", "volume_positive"]
    assert water.points[1].dtype == "i32"
    assert water.points[1].word_order == "little"


def test_profile_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        '[profile]\nname = "mine"\nmanufacturer = "x"\nmodel = "y"\nsource = "z"\n'
        '[[points]]\nmetric = "t"\naddress = 3\ntype = "i16"\nscale = 0.1\n'
    )
    cfg = ModbusConfig(
        transport="tcp",
        host="h",
        devices=[DeviceConfig(name="d", unit_id=1, profile="mine.toml")],
    )
    (plan,) = resolve(cfg, base_dir=tmp_path)
    assert plan.points[0].scale == 0.1


def test_every_config_problem_is_reported_at_once() -> None:
    cfg = ModbusConfig(
        transport="rtu",
        devices=[
            DeviceConfig(name="a", unit_id=0, profile="no-such-meter"),
            DeviceConfig(name="a", unit_id=3, include=["x"]),
            DeviceConfig(name="c", unit_id=3, profile="tuf2000", include=["nope"]),
            DeviceConfig(
                name="d",
                unit_id=4,
                points=[PointConfig(metric="x", address=65535, type="u32")] * 2,
            ),
        ],
    )
    with pytest.raises(ConfigError) as info:
        resolve(cfg)
    text = str(info.value)
    for needle in (
        "needs `port`",
        "1..247",
        "no such profile",
        "device name appears twice",
        "include needs a profile",
        "unit_id 3 appears twice",
        "unknown metrics ['nope']",
        "appears twice",
        "runs past register 65535",
    ):
        assert needle in text, needle


def test_two_identical_meters_need_distinct_series() -> None:
    cfg = ModbusConfig(
        transport="tcp",
        host="h",
        devices=[
            DeviceConfig(name="m1", unit_id=1, profile="eastron-sdm630"),
            DeviceConfig(name="m2", unit_id=2, profile="eastron-sdm630"),
        ],
    )
    with pytest.raises(ConfigError, match="metric_prefix or a distinguishing tag"):
        resolve(cfg)


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown"):
        msgspec.convert({"devices": [], "tcp_prot": 502}, ModbusConfig)


# -- declarations: unit, kind, range (issue 13) ------------------------------------------------


def test_profile_points_declare_units_kinds_and_ranges() -> None:
    cfg = ModbusConfig(
        port=PortConfig(path="/dev/null"),
        devices=[DeviceConfig(name="main", unit_id=1, profile="eastron-sdm630")],
    )
    points = {p.metric: p for p in resolve(cfg)[0].points}
    assert points["energy_import"].kind == Kind.CUMULATIVE
    assert points["energy_import"].problem(-1.0) == "out_of_range"
    assert points["voltage_l1"].problem(-5.0) == "out_of_range"
    assert points["power_total"].problem(-1500.0) is None  # exporting
    assert points["frequency"].problem(float("nan")) == "non_finite"
    for name in builtin_profiles():
        profile = load_profile(name)
        for pc in profile.points:
            assert unit_problem(pc.unit) is None, (name, pc.metric)


@pytest.mark.parametrize(
    ("point", "problem"),
    [
        ({"unit": "kWh"}, r"points\[0\]\.unit: unit 'kWh' is spelled 'kW.h'"),
        ({"unit": "kW.h", "kind": "resetting"}, r"points\[0\]\.kind: .* needs a metric ending"),
        ({"unit": "W", "kind": "cumulative"}, r"points\[0\]\.kind: kind cumulative needs"),
        ({"unit": "%", "min": 0, "max": 200, "metric": "x_today"}, None),
        ({"unit": "Cel", "max": -300}, r"points\[0\]\.min: max -300 is below"),
    ],
)
def test_point_declarations_are_checked(point: dict[str, object], problem: str | None) -> None:
    raw = {"metric": "m", "address": 0, **point}
    cfg = ModbusConfig(
        port=PortConfig(path="/dev/null"),
        devices=[DeviceConfig(name="d", unit_id=1, points=[msgspec.convert(raw, PointConfig)])],
    )
    if problem is None:
        (plan,) = resolve(cfg)
        assert plan.points[0].limits.high == 100.0  # never wider than the unit's limits
        return
    with pytest.raises(ConfigError, match=problem):
        resolve(cfg)
