"""Figures the platform computes: consumption from cumulative counters, and raw material received
from weighbridge tickets. Pure: readings and events in, figures out; no I/O and no clock (the
caller passes `until_ms`, the instant up to which data can exist). docs/figures.md defines each
figure for users; this docstring is the contract the code keeps.

Counters (`clean_counter`, then `attribute`):
- Only readings of quality GOOD or UNCERTAIN with a trusted timestamp are used; BAD and
  TIME_UNTRUSTED readings are counted in `excluded`. For a cumulative register that costs
  resolution only, never consumed quantity.
- Readings are taken in timestamp order whatever order they arrived in; of several readings with
  one timestamp the largest value is kept.
- The cleaned counter is the running maximum of the readings within a *segment*; consumption is
  its increase, so no step is ever negative and jitter below the previous maximum (within
  `rel_tolerance`) adds nothing until the register passes that maximum again.
- A drop below the maximum is, in this order: a low *excursion* (the series comes back to the
  maximum within `excursion_ms`: the readings below are discarded); the end of a high excursion
  (readings above a level of the segment that the series falls back to, which began within
  `excursion_ms` before the drop, are discarded); a
  *rollover* (a wrap at a candidate register width `M` with `M - max + value <= rollover_fraction
  * M`, within `rel_tolerance * M` for float rounding: the step counts `M - max + value`);
  otherwise a *reset* (meter replaced or cleared): a new segment starts, and the one step across
  the reset is unknown, like a gap.
- Attribution to intervals (`grid` boundaries): a step between consecutive readings inside one
  interval is attributed to it whole, however long (the register makes it exact). A step that
  crosses boundaries is split in proportion to time when it is at most `max_step_ms` long, and is
  a *gap* otherwise: attributed to no interval, listed with its consumption, and counted in
  `unattributed` when both its ends lie in the window. An interval's `covered_ms` is the time
  that attributed steps cover; `status` is complete (all of it up to `until_ms`), partial, gap
  (nothing covered: value None, never zero) or future (starts at or after `until_ms`).
- Intervals are never negative, never hold a spike from a reset, and an interval with no reading
  at either side of it is a gap. Sums over groups add the known parts; a group's status says
  whether any member is partial or missing.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cloud.storage.reads import EventRecord, SeriesInfo
from wire.models import Quality
from wire.units import NOT_CUMULATIVE_SUFFIXES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_SLOT_MS = 15 * 60_000  # every UTC offset in use is a multiple of 15 minutes

# unit as sent -> (unit the sums are in, factor to it)
COUNTER_UNITS: dict[str, tuple[str, float]] = {
    "Wh": ("kWh", 0.001),
    "kWh": ("kWh", 1.0),
    "MWh": ("kWh", 1000.0),
    "GWh": ("kWh", 1_000_000.0),
    "varh": ("kvarh", 0.001),
    "kvarh": ("kvarh", 1.0),
    "Mvarh": ("kvarh", 1000.0),
    "MJ": ("GJ", 0.001),
    "GJ": ("GJ", 1.0),
    "L": ("m³", 0.001),
    "l": ("m³", 0.001),
    "m3": ("m³", 1.0),
    "m³": ("m³", 1.0),
    "Nm3": ("Nm³", 1.0),
    "Nm³": ("Nm³", 1.0),
    "Sm3": ("Sm³", 1.0),
    "Sm³": ("Sm³", 1.0),
    # The UCUM codes gateways declare (wire.units), summed with the spellings above.
    "W.h": ("kWh", 0.001),
    "kW.h": ("kWh", 1.0),
    "MW.h": ("kWh", 1000.0),
    "W.min": ("kWh", 1.0 / 60_000.0),
    "var.h": ("kvarh", 0.001),
    "kvar.h": ("kvarh", 1.0),
    "kJ": ("GJ", 1e-6),
}
TICKET_KIND = "weighbridge_ticket"
_OUTBOUND = frozenset({"out", "outbound", "dispatch", "shipped"})
# Candidate register widths for rollovers: 10^n, and 2^16/2^32/2^48/2^64 raw counts scaled by
# 1, 0.1, 0.01 or 0.001 (a Wh register read as kWh wraps at 2^32 / 1000).
WRAP_CANDIDATES = sorted(
    {10.0**n for n in range(1, 16)}
    | {2.0**bits * scale for bits in (16, 32, 48, 64) for scale in (1.0, 0.1, 0.01, 0.001)}
)


class Interval(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"  # the whole window as one interval


class Status(enum.StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    GAP = "gap"
    FUTURE = "future"


class Role(enum.StrEnum):
    CONSUMPTION = "consumption"  # summed into consumption figures
    EXPORT = "export"  # a counter of what leaves (energy fed back): never summed as consumption
    OTHER = "other"  # a counter beside an import register of the same meter (e.g. a total)


@dataclass(frozen=True, slots=True)
class CounterPolicy:
    """The thresholds of the counter rules; the defaults are what docs/figures.md states."""

    max_step_ms: int = 15 * 60_000
    excursion_ms: int = HOUR_MS
    rollover_fraction: float = 0.01
    rel_tolerance: float = 1e-6

    @property
    def context_ms(self) -> int:
        """How far before and after a window readings must be fetched for the rules to see."""
        return max(self.max_step_ms, self.excursion_ms)


# -- which series are counters, and how they add up --------------------------------------------


def counter_unit(unit: str) -> tuple[str, float] | None:
    """(unit of the sums, factor) for a counter unit, None for any other unit."""
    return COUNTER_UNITS.get(unit.strip())


def is_counter(metric: str, unit: str) -> bool:
    """A series is a cumulative counter when its unit is a quantity (energy, volume) and its
    metric does not say it is a per-interval amount."""
    return counter_unit(unit) is not None and not metric.lower().endswith(NOT_CUMULATIVE_SUFFIXES)


def roles(series: Sequence[SeriesInfo]) -> dict[int, Role]:
    """The role of every counter among `series` (non-counters are left out).

    `export` in a metric name marks an export register. When a meter (device and tags) has an
    `import` register, its other counters in the same unit (a total of import and export, a net
    value) are `other`, so the meter is counted once."""
    counters = [s for s in series if is_counter(s.metric, s.unit)]

    def meter(s: SeriesInfo) -> tuple[str, ...]:
        unit = COUNTER_UNITS[s.unit.strip()][0]
        return (s.device_id, s.site, s.area, s.process, s.medium, unit)

    with_import = {meter(s) for s in counters if "import" in s.metric.lower()}
    out = {}
    for s in counters:
        name = s.metric.lower()
        if "export" in name:
            out[s.series_id] = Role.EXPORT
        elif meter(s) in with_import and "import" not in name:
            out[s.series_id] = Role.OTHER
        else:
            out[s.series_id] = Role.CONSUMPTION
    return out


# -- interval grids -----------------------------------------------------------------------------


def grid(from_ms: int, to_ms: int, interval: Interval, tz: ZoneInfo) -> list[int]:
    """Interval boundaries from `from_ms` to `to_ms` (both included) on the local calendar of
    `tz`: local hours, days (a day may have 23 or 25 hours) or months."""
    if from_ms >= to_ms:
        raise ValueError("from_ms must be before to_ms")
    if interval is Interval.TOTAL:
        return [from_ms, to_ms]

    def key(ts: int) -> tuple[int, ...]:
        local = datetime.fromtimestamp(ts / 1000, UTC).astimezone(tz)
        if interval is Interval.HOUR:
            return (local.year, local.month, local.day, local.hour)
        if interval is Interval.DAY:
            return (local.year, local.month, local.day)
        return (local.year, local.month)

    out = [from_ms]
    t = (from_ms // _SLOT_MS + 1) * _SLOT_MS
    previous = key(from_ms)
    while t < to_ms:
        k = key(t)
        if k != previous:
            out.append(t)
            previous = k
        t += _SLOT_MS
    out.append(to_ms)
    return out


def local_day(ts_ms: int, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of the local calendar day of `tz` that holds `ts_ms`."""
    local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    start = int(midnight.timestamp() * 1000)
    # the next local midnight, found on the 15-minute grid (DST days are 23 or 25 hours)
    days = grid(start, start + DAY_MS + 2 * HOUR_MS, Interval.DAY, tz)
    return days[0], days[1]


# -- counters -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Trace:
    """A cleaned counter: timestamps, the running maximum per segment, and what happened."""

    ts: list[int] = field(default_factory=list)
    level: list[float] = field(default_factory=list)
    # index in `ts` where a new segment starts -> wrap modulus (rollover) or None (reset)
    breaks: dict[int, float | None] = field(default_factory=dict)
    excursions: int = 0  # readings discarded as excursions
    excluded: int = 0  # readings not used: BAD or untrusted time

    def delta(self, i: int) -> float | None:
        """Consumption of the step from reading i-1 to reading i; None when unknown (a reset)."""
        if i in self.breaks:
            modulus = self.breaks[i]
            if modulus is None:
                return None
            return modulus - self.level[i - 1] + self.level[i]
        return self.level[i] - self.level[i - 1]


def wrap_modulus(
    top: float, value: float, fraction: float, rel_tolerance: float = 0.0
) -> float | None:
    """The register width at which `top` -> `value` is a plausible wrap, if any.

    The step `M - top + value` is compared with `fraction * M` within `rel_tolerance` of `M`:
    `value` is a float near `M` reduced modulo `M`, so a step of exactly the fraction can come out
    a rounding above it, and a boundary case must not turn into a reset that loses the step."""
    if value < 0:
        return None
    i = bisect.bisect_right(WRAP_CANDIDATES, top)
    if i == len(WRAP_CANDIDATES):
        return None
    modulus = WRAP_CANDIDATES[i]
    allowed = fraction * modulus + rel_tolerance * modulus + 1e-9
    return modulus if modulus - top + value <= allowed else None


def _forward_max(ts: Sequence[int], values: Sequence[float], window_ms: int) -> list[float]:
    """For each i, the largest value among readings after i that are at most window_ms later."""
    n = len(ts)
    out = [-math.inf] * n
    window: deque[int] = deque()  # indices, values increasing from left to right
    right = n - 1
    for i in range(n - 2, -1, -1):
        entering = i + 1
        while window and values[window[0]] <= values[entering]:
            window.popleft()
        window.appendleft(entering)
        while ts[right] > ts[i] + window_ms:
            right -= 1
        while window and window[-1] > right:
            window.pop()
        if window:
            out[i] = values[window[-1]]
    return out


Row = tuple[int, float, int]  # (ts_ms, value, quality), as the store returns readings


def clean_counter(points: Iterable[Row], policy: CounterPolicy) -> Trace:
    """Apply the counter rules (module docstring) to raw readings in any order."""
    trace = Trace()
    ts: list[int] = []
    values: list[float] = []
    ordered = True
    last_t = -(2**63)
    for t, v, q in points:
        if q > Quality.UNCERTAIN or q < 0 or v != v or v in (math.inf, -math.inf):
            trace.excluded += 1  # BAD, TIME_UNTRUSTED (any code above 1), or not a number
            continue
        if t <= last_t:
            ordered = False
        last_t = t
        ts.append(t)
        values.append(v)
    if not ordered:
        rows = sorted(zip(ts, values, strict=True))
        ts, values = [], []
        for t, v in rows:
            if ts and ts[-1] == t:
                values[-1] = v  # sorted: the last of equal timestamps is the largest value
            else:
                ts.append(t)
                values.append(v)

    kept_ts, level = trace.ts, trace.level
    segment = 0  # index in kept_ts where the current segment starts
    ahead: list[float] | None = None
    tol_rel, window = policy.rel_tolerance, policy.excursion_ms
    n, j = len(ts), 0
    top = -math.inf
    while j < n:
        t, v = ts[j], values[j]
        if v >= top:  # the common case: the register rose or stayed
            kept_ts.append(t)
            level.append(v)
            top = v
            j += 1
            continue
        tol = tol_rel * abs(top) + 1e-9
        if v >= top - tol:  # jitter just below the level: keeps the level
            kept_ts.append(t)
            level.append(top)
            j += 1
            continue
        # A drop. A low excursion: does the series come back to its level soon?
        if ahead is None:
            ahead = _forward_max(ts, values, window)
        if ahead[j] >= top - tol:
            back = j + 1
            while values[back] < top - tol:
                back += 1
            trace.excursions += back - j
            j = back
            continue
        # The end of a high excursion: the last level of this segment that v falls back to.
        k = bisect.bisect_right(level, v + tol, segment, len(level)) - 1
        if k >= segment and kept_ts[k + 1] >= t - window:
            trace.excursions += len(level) - k - 1
            del kept_ts[k + 1 :], level[k + 1 :]
            top = level[-1]
            continue  # v is judged again against the level it fell back to
        trace.breaks[len(level)] = wrap_modulus(
            top, v, policy.rollover_fraction, policy.rel_tolerance
        )
        segment = len(level)
        kept_ts.append(t)
        level.append(v)
        top = v
        j += 1
    return trace


@dataclass(frozen=True, slots=True)
class Gap:
    from_ms: int
    to_ms: int
    consumption: float | None  # None across a reset
    reset: bool = False


@dataclass(slots=True)
class Figure:
    """Consumption per interval of one series or of a group, with how much of it is known.

    `spans_ms[k]` is the time of interval k for which data is due: up to `until_ms`, less a tail
    after the newest reading that is at most `max_step_ms` long (the next reading is not due yet,
    so that tail is not a gap). `covered_ms[k]` is the part of it that attributed steps cover."""

    boundaries: list[int]
    until_ms: int
    values: list[float | None]
    covered_ms: list[int]
    spans_ms: list[int]
    total: float = 0.0  # attributed to the intervals
    unattributed: float = 0.0  # across gaps that lie wholly in the window
    gaps: list[Gap] = field(default_factory=list)

    def status(self, k: int) -> Status:
        if self.boundaries[k] >= self.until_ms or self.spans_ms[k] == 0:
            return Status.FUTURE
        if self.covered_ms[k] >= self.spans_ms[k]:
            return Status.COMPLETE
        return Status.PARTIAL if self.covered_ms[k] > 0 else Status.GAP

    def coverage(self, k: int) -> float:
        span = self.spans_ms[k]
        return min(1.0, self.covered_ms[k] / span) if span else 0.0


def _spans(b: Sequence[int], due_ms: int) -> list[int]:
    return [max(0, min(b[k + 1], due_ms) - b[k]) for k in range(len(b) - 1)]


def attribute(
    trace: Trace, boundaries: Sequence[int], *, until_ms: int, max_step_ms: int
) -> Figure:
    """Consumption of a cleaned counter per interval of `boundaries` (module docstring)."""
    b = list(boundaries)
    last = len(b) - 1
    sums = [0.0] * last
    covered = [0] * last
    until = min(until_ms, b[-1])
    ts, level, breaks = trace.ts, trace.level, trace.breaks
    newest = ts[-1] if ts else None
    due = newest if newest is not None and 0 <= until - newest <= max_step_ms else until
    fig = Figure(b, until, [], covered, _spans(b, due))
    lo, hi = b[0], b[-1]
    start = max(1, bisect.bisect_right(ts, lo))
    k = bisect.bisect_right(b, ts[start - 1]) - 1 if ts else 0  # the interval of t0
    for i in range(start, len(ts)):
        t0, t1 = ts[i - 1], ts[i]
        if t0 >= hi:
            break
        k1 = k
        while k1 < last and t1 >= b[k1 + 1]:
            k1 += 1
        d = trace.delta(i) if breaks and i in breaks else level[i] - level[i - 1]
        if d is None:
            fig.gaps.append(Gap(t0, t1, None, reset=True))
        elif k == k1:
            sums[k] += d
            covered[k] += t1 - t0
        elif t1 - t0 > max_step_ms:
            fig.gaps.append(Gap(t0, t1, d))
            if t0 >= lo and t1 <= hi:
                fig.unattributed += d
        else:
            duration = t1 - t0
            for kk in range(max(k, 0), min(k1, last - 1) + 1):
                overlap = min(t1, b[kk + 1]) - max(t0, b[kk])
                sums[kk] += d * overlap / duration
                covered[kk] += overlap
        k = k1
    fig.values = [sums[k] if covered[k] > 0 else None for k in range(last)]
    fig.total = math.fsum(v for v in fig.values if v is not None)
    return fig


def combine(figures: Sequence[tuple[Figure, float]]) -> Figure:
    """The sum of figures over the same boundaries, each scaled by its factor (unit conversion).

    A group interval holds the sum of the members' known values; its spans and covered times are
    the members' summed, so it is complete only when every member is."""
    if not figures:
        raise ValueError("nothing to combine")
    first = figures[0][0]
    last = len(first.boundaries) - 1
    values: list[float | None] = []
    covered = []
    spans = []
    for k in range(last):
        known = [v * factor for f, factor in figures if (v := f.values[k]) is not None]
        values.append(math.fsum(known) if known else None)
        covered.append(sum(min(f.covered_ms[k], f.spans_ms[k]) for f, _ in figures))
        spans.append(sum(f.spans_ms[k] for f, _ in figures))
    out = Figure(list(first.boundaries), first.until_ms, values, covered, spans)
    out.total = math.fsum(v for v in values if v is not None)
    out.unattributed = math.fsum(f.unattributed * factor for f, factor in figures)
    out.gaps = sorted((g for f, _ in figures for g in f.gaps), key=lambda g: g.from_ms)
    return out


# -- raw material received ------------------------------------------------------------------------


@dataclass(slots=True)
class MaterialFigure:
    material: str
    net_kg: list[float]  # per interval
    tickets: list[int]

    @property
    def total_kg(self) -> float:
        return math.fsum(self.net_kg)

    @property
    def total_tickets(self) -> int:
        return sum(self.tickets)


@dataclass(slots=True)
class MaterialsReport:
    boundaries: list[int]
    materials: list[MaterialFigure]
    skipped: dict[str, int]  # reason -> tickets not counted
    flagged: int  # counted, but uncertain or with an untrusted timestamp


def number(value: object) -> float | None:
    """A finite number from an event attribute (int, float or numeric text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def materials_received(
    events: Iterable[EventRecord], boundaries: Sequence[int], *, kind: str = TICKET_KIND
) -> MaterialsReport:
    """Net mass received per material and interval, from ticket events (`weighbridge_ticket`).

    The contract (docs/figures.md): `material` non-empty, `net_kg` a number > 0, optional
    `ticket` (a ticket seen twice from one device counts once), optional `direction` (out,
    outbound, dispatch, shipped: not received). Quality BAD is not counted."""
    b = list(boundaries)
    last = len(b) - 1
    skipped = dict.fromkeys(("bad", "no_material", "no_net_kg", "not_positive", "outbound"), 0)
    skipped["duplicate"] = 0
    flagged = 0
    seen: set[tuple[str, str]] = set()
    by_material: dict[str, MaterialFigure] = {}
    for e in sorted(events, key=lambda e: (e.ts_ms, e.device_id, e.seq)):
        if e.kind != kind:
            continue
        k = bisect.bisect_right(b, e.ts_ms) - 1
        if not 0 <= k < last:
            continue
        if e.quality & 3 == Quality.BAD:
            skipped["bad"] += 1
            continue
        material = e.attrs.get("material")
        name = str(material).strip() if material is not None else ""
        if not name:
            skipped["no_material"] += 1
            continue
        net = number(e.attrs.get("net_kg"))
        if net is None:
            skipped["no_net_kg"] += 1
            continue
        direction = str(e.attrs.get("direction", "")).strip().lower()
        if direction in _OUTBOUND:
            skipped["outbound"] += 1
            continue
        if net <= 0:
            skipped["not_positive"] += 1
            continue
        ticket = e.attrs.get("ticket")
        if ticket is not None:
            ident = (e.device_id, str(ticket))
            if ident in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(ident)
        if e.quality != Quality.GOOD:
            flagged += 1
        fig = by_material.get(name)
        if fig is None:
            fig = by_material[name] = MaterialFigure(name, [0.0] * last, [0] * last)
        fig.net_kg[k] += net
        fig.tickets[k] += 1
    materials = sorted(by_material.values(), key=lambda m: (-m.total_kg, m.material))
    return MaterialsReport(b, materials, skipped, flagged)
