"""Units, plausible ranges and counter semantics: what a series' unit and metric promise.

One spelling per unit. Units are UCUM case-sensitive codes (The Unified Code for Units of
Measure, ucum.org: `Cel`, `kW.h`, `m3`, `[lb_av]`, annotations in braces such as `{lqi}`), with
`""` for a number that has no unit (a state, a code, a count of events). `UNITS` is the closed
set a gateway's declared points may use; what a dashboard shows (`°C`, `kWh`) is a display
spelling, not this one. `ALIASES` maps common other spellings to the code, only to say "write
`Cel`" in a configuration error: nothing is converted silently.

Every unit carries its physical limits (`low`, `high`: −273.15 Cel, 0–100 %, no negative energy
or volume), the range a value must be in to be GOOD unless a point narrows it further.

Counter semantics (`Kind`): a *gauge* is a level (power, temperature); a *cumulative* counter
only grows except when it rolls over or is reset (an energy register); a *resetting* counter
grows and goes back to zero on a schedule (Tasmota's energy of today). Only cumulative counters
feed consumption figures. The wire carries this in the metric name, the simplest way the series
key allows: a series in a counter unit (`COUNTER_UNITS`) is cumulative unless its metric ends in
one of `NOT_CUMULATIVE_SUFFIXES`. The gateway refuses at start-up a resetting counter or gauge in
a counter unit whose metric lacks such a suffix, and a cumulative one whose metric has one, so
the name never contradicts the declaration (docs/protocol.md §1, "Units and counters").
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

_INF = math.inf


class Kind(enum.StrEnum):
    GAUGE = "gauge"
    CUMULATIVE = "cumulative"
    RESETTING = "resetting"


@dataclass(frozen=True, slots=True)
class UnitInfo:
    """A unit's quantity (for docs and errors) and its physical limits."""

    quantity: str
    low: float = -_INF
    high: float = _INF


def _u(quantity: str, low: float = -_INF, high: float = _INF) -> UnitInfo:
    return UnitInfo(quantity, low, high)


UNITS: dict[str, UnitInfo] = {
    "": _u("none (state, code, count)"),
    "1": _u("ratio (power factor)"),
    "%": _u("percent", 0.0, 100.0),
    # temperature
    "Cel": _u("temperature", -273.15),
    "K": _u("temperature", 0.0),
    "[degF]": _u("temperature", -459.67),
    # electricity
    "V": _u("voltage"),
    "mV": _u("voltage"),
    "kV": _u("voltage"),
    "A": _u("current"),
    "mA": _u("current"),
    "W": _u("active power"),
    "kW": _u("active power"),
    "MW": _u("active power"),
    "V.A": _u("apparent power", 0.0),
    "kV.A": _u("apparent power", 0.0),
    "var": _u("reactive power"),
    "kvar": _u("reactive power"),
    "Hz": _u("frequency", 0.0),
    "W.h": _u("energy", 0.0),
    "kW.h": _u("energy", 0.0),
    "MW.h": _u("energy", 0.0),
    "W.min": _u("energy", 0.0),
    "var.h": _u("reactive energy", 0.0),
    "kvar.h": _u("reactive energy", 0.0),
    "kJ": _u("energy", 0.0),
    "MJ": _u("energy", 0.0),
    "GJ": _u("energy", 0.0),
    "GJ/h": _u("heat flow"),
    # volume and flow
    "L": _u("volume", 0.0),
    "m3": _u("volume", 0.0),
    "L/min": _u("volume flow"),
    "L/s": _u("volume flow"),
    "m3/h": _u("volume flow"),
    "m/s": _u("velocity"),
    # mass (a scale shows negative net weights: no lower limit)
    "mg": _u("mass"),
    "g": _u("mass"),
    "kg": _u("mass"),
    "t": _u("mass"),
    "[car_m]": _u("mass"),
    "[lb_av]": _u("mass"),
    "[oz_av]": _u("mass"),
    "[oz_tr]": _u("mass"),
    "[pwt_tr]": _u("mass"),
    "[lton_av]": _u("mass"),
    # pressure (absolute and barometric are never negative; gauge pressure is `bar`)
    "Pa": _u("pressure"),
    "hPa": _u("pressure", 0.0),
    "kPa": _u("pressure"),
    "bar": _u("pressure"),
    "mbar": _u("pressure"),
    # environment and radio
    "lx": _u("illuminance", 0.0),
    "[ppm]": _u("concentration", 0.0),
    "ug/m3": _u("mass concentration", 0.0),
    "dB": _u("level"),
    "dBm": _u("radio level"),
    "{lqi}": _u("Zigbee link quality", 0.0, 255.0),
    "{pcs}": _u("count of pieces (a counting scale)", 0.0),
    # time
    "ms": _u("time", 0.0),
    "s": _u("time", 0.0),
    "min": _u("time", 0.0),
    "h": _u("time", 0.0),
}

# Other spellings seen in configs and payloads, for error messages only.
ALIASES: dict[str, str] = {
    "°C": "Cel",
    "degC": "Cel",
    "C": "Cel",
    "°F": "[degF]",
    "degF": "[degF]",
    "Wh": "W.h",
    "kWh": "kW.h",
    "MWh": "MW.h",
    "varh": "var.h",
    "kvarh": "kvar.h",
    "VA": "V.A",
    "kVA": "kV.A",
    "l": "L",
    "m³": "m3",
    "m³/h": "m3/h",
    "ppm": "[ppm]",
    "lb": "[lb_av]",
    "oz": "[oz_av]",
    "ct": "[car_m]",
    "lqi": "{lqi}",
    "%RH": "%",
    "µg/m³": "ug/m3",
}

# A counter unit -> (the unit its figures are summed in, the factor to it).
COUNTER_UNITS: dict[str, tuple[str, float]] = {
    "W.h": ("kW.h", 0.001),
    "kW.h": ("kW.h", 1.0),
    "MW.h": ("kW.h", 1000.0),
    "W.min": ("kW.h", 1.0 / 60_000.0),
    "var.h": ("kvar.h", 0.001),
    "kvar.h": ("kvar.h", 1.0),
    "kJ": ("GJ", 1e-6),
    "MJ": ("GJ", 0.001),
    "GJ": ("GJ", 1.0),
    "L": ("m3", 0.001),
    "m3": ("m3", 1.0),
}

# A mass unit a production counter (a belt scale's totaliser, a bagging line's count of tonnes)
# may be declared in -> the factor to tonnes. Such a series is production, never consumption:
# it is not in COUNTER_UNITS. The cloud reads a series of medium `product` in one of these
# units as a cumulative register of tonnes made; a point may declare `kind = "cumulative"` in
# one (docs/figures.md, "Where production comes from").
PRODUCTION_UNITS: dict[str, float] = {
    "t": 1.0,
    "kg": 0.001,
    "g": 1e-6,
}

# A metric in a counter unit that is not a running total (energy per interval, of today ...).
NOT_CUMULATIVE_SUFFIXES = (
    "_delta",
    "_interval",
    "_increment",
    "_rate",
    "_today",
    "_yesterday",
    "_period",
)


def unit_problem(unit: str) -> str | None:
    """Why `unit` is not in the closed set (with the spelling to use), or None."""
    if unit in UNITS:
        return None
    hint = ALIASES.get(unit)
    if hint is not None:
        return f"unit {unit!r} is spelled {hint!r} here (UCUM codes, docs/configuration.md)"
    return f"unknown unit {unit!r} (the units are listed in docs/configuration.md)"


def is_cumulative_name(metric: str, unit: str) -> bool:
    """What the wire says: a series is a cumulative counter when its unit is a counter unit and
    its metric does not end in a not-cumulative suffix."""
    return unit in COUNTER_UNITS and not metric.lower().endswith(NOT_CUMULATIVE_SUFFIXES)


def default_kind(unit: str) -> Kind:
    """A point that does not say: cumulative in a counter unit, a gauge otherwise."""
    return Kind.CUMULATIVE if unit in COUNTER_UNITS else Kind.GAUGE


def kind_problem(metric: str, unit: str, kind: Kind) -> str | None:
    """Why a point's metric name would tell the cloud something else than its declared kind."""
    if unit in PRODUCTION_UNITS and kind is Kind.CUMULATIVE:
        # a mass totaliser (production counter): its name must not say "per interval" either
        if metric.lower().endswith(NOT_CUMULATIVE_SUFFIXES):
            return f"metric {metric!r} ends in a suffix that marks it not cumulative"
        return None
    if unit not in COUNTER_UNITS:
        if kind is Kind.CUMULATIVE:
            units = ", ".join([*COUNTER_UNITS, *PRODUCTION_UNITS])
            return f"kind cumulative needs a counter or mass unit ({units}), not {unit!r}"
        return None
    named = is_cumulative_name(metric, unit)
    if kind is Kind.CUMULATIVE and not named:
        return f"metric {metric!r} ends in a suffix that marks it not cumulative"
    if kind is not Kind.CUMULATIVE and named:
        ends = ", ".join(NOT_CUMULATIVE_SUFFIXES)
        return f"a {kind} point in {unit!r} needs a metric ending in one of {ends}"
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    """The plausible range of one point: a finite value in [low, high] passes."""

    low: float = -_INF
    high: float = _INF

    def problem(self, value: float) -> str | None:
        """None when `value` may be GOOD; else `non_finite` or `out_of_range`."""
        if not math.isfinite(value):
            return "non_finite"
        if not self.low <= value <= self.high:
            return "out_of_range"
        return None


def limits_for(
    unit: str, kind: Kind, low: float | None = None, high: float | None = None
) -> Limits:
    """The unit's physical limits, narrowed by a point's own `low`/`high`; counters never go
    below zero."""
    info = UNITS.get(unit, UNITS[""])
    lo, hi = info.low, info.high
    if kind is not Kind.GAUGE:
        lo = max(lo, 0.0)
    if low is not None:
        lo = max(lo, low)
    if high is not None:
        hi = min(hi, high)
    return Limits(lo, hi)


def range_problem(unit: str, low: float | None, high: float | None) -> str | None:
    """Why a point's declared range is not usable (inverted, or outside the unit's limits)."""
    for name, bound in (("min", low), ("max", high)):
        if bound is not None and not math.isfinite(bound):
            return f"{name} must be a finite number"
    if low is not None and high is not None and low > high:
        return f"min {low:g} is above max {high:g}"
    info = UNITS.get(unit)
    if info is not None:
        if high is not None and high < info.low:
            return f"max {high:g} is below the physical limit {info.low:g} of {unit!r}"
        if low is not None and low > info.high:
            return f"min {low:g} is above the physical limit {info.high:g} of {unit!r}"
    return None
