"""The closed set of units, their physical limits, and what a metric name says about a counter."""

from __future__ import annotations

import math

import pytest

from wire.units import (
    COUNTER_UNITS,
    UNITS,
    Kind,
    Limits,
    is_cumulative_name,
    kind_problem,
    limits_for,
    range_problem,
    unit_problem,
)


def test_every_counter_unit_is_a_unit_and_sums_into_one() -> None:
    for unit, (base, factor) in COUNTER_UNITS.items():
        assert unit in UNITS
        assert base in UNITS
        assert factor > 0
        assert UNITS[unit].low == 0.0  # energies and volumes are never negative


@pytest.mark.parametrize(
    ("unit", "hint"), [("°C", "Cel"), ("kWh", "kW.h"), ("degC", "Cel"), ("m³", "m3")]
)
def test_other_spellings_are_refused_with_the_code_to_write(unit: str, hint: str) -> None:
    problem = unit_problem(unit)
    assert problem is not None
    assert repr(hint) in problem


def test_a_bit_error_is_not_a_unit() -> None:
    for token in ("{g", "kG", "ke"):
        assert unit_problem(token) is not None
    assert unit_problem("kg") is None
    assert unit_problem("") is None


@pytest.mark.parametrize(
    ("unit", "kind", "value", "problem"),
    [
        ("Cel", Kind.GAUGE, -273.16, "out_of_range"),
        ("Cel", Kind.GAUGE, -273.15, None),
        ("%", Kind.GAUGE, 140.5, "out_of_range"),
        ("%", Kind.GAUGE, 255.0, "out_of_range"),
        ("%", Kind.GAUGE, 100.0, None),
        ("W.h", Kind.CUMULATIVE, -1.0, "out_of_range"),
        ("", Kind.CUMULATIVE, -1.0, "out_of_range"),  # a counter without a unit: still >= 0
        ("W", Kind.GAUGE, -1e9, None),  # signed: the point narrows it if it must
        ("W", Kind.GAUGE, math.nan, "non_finite"),
    ],
)
def test_physical_limits(unit: str, kind: Kind, value: float, problem: str | None) -> None:
    assert limits_for(unit, kind).problem(value) == problem


def test_a_point_narrows_the_limits_never_widens_them() -> None:
    assert limits_for("%", Kind.GAUGE, -5.0, 50.0) == Limits(0.0, 50.0)
    assert range_problem("%", 10.0, 5.0) is not None
    assert range_problem("%", None, -1.0) is not None
    assert range_problem("W", -1e6, 1e6) is None
    assert range_problem("W", math.inf, None) is not None


def test_the_name_says_the_kind() -> None:
    assert is_cumulative_name("plug.energy_total", "kW.h")
    assert not is_cumulative_name("plug.energy_today", "kW.h")
    assert not is_cumulative_name("plug.power", "W")
    assert kind_problem("energy_today", "kW.h", Kind.RESETTING) is None
    assert kind_problem("energy_today", "kW.h", Kind.CUMULATIVE) is not None
    assert kind_problem("energy_daily", "kW.h", Kind.RESETTING) is not None
    assert kind_problem("energy", "W", Kind.CUMULATIVE) is not None
    # a mass totaliser may be cumulative (a production counter); a scale's weight is a gauge
    assert kind_problem("belt_total", "t", Kind.CUMULATIVE) is None
    assert kind_problem("belt_today", "kg", Kind.CUMULATIVE) is not None
    assert kind_problem("net_weight", "kg", Kind.GAUGE) is None
    assert kind_problem("net_weight", "[lb_av]", Kind.CUMULATIVE) is not None
    assert kind_problem("power", "W", Kind.GAUGE) is None
