"""Production per process and energy intensity (kWh/t, m³/t) per day and per shift. Pure: readings
and events in, figures out; the caller passes the hour boundaries and `until_ms`.

Contract (docs/figures.md, "Production and intensity"):
- Production is tonnes of weighbridge tickets (`weighbridge_ticket`, `net_kg` > 0, quality not
  BAD, a ticket number seen twice from one device counted once). A ticket belongs to a process by
  its `process` attribute, else by its `material` being one of the process's materials; it counts
  as that process's production when its direction is the process's (`out`: product leaving,
  the default; `in`: raw material received). A ticket without `direction` is inbound.
- An hour is *idle* for a process when neither it nor the `margin` hours either side hold
  production: consumption then is baseload.
- Intensity of a period = consumption of the process's counters of one medium / tonnes. It is
  given only when every hour of the period is complete for every counter and tonnes > 0; a
  partial period has no intensity (never a low one from missing data).
- A shift is [start_hour, end_hour) local time; one that wraps past midnight belongs to the day
  it starts.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cloud.apps.figures import TICKET_KIND, Figure, Interval, Status, grid, number
from cloud.storage.reads import EventRecord
from wire.models import Quality

DAY_PERIOD = "day"  # the period of a whole local day; shifts have other names
_OUTBOUND = frozenset({"out", "outbound", "dispatch", "shipped"})


@dataclass(frozen=True, slots=True)
class Shift:
    name: str
    start_hour: int
    end_hour: int  # exclusive; <= start_hour means the shift ends the next day

    def holds(self, hour: int) -> bool:
        if self.start_hour < self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    name: str  # the process's id: what the figures, API and tickets' `process` call it
    direction: str = "out"  # "out": product leaving counts; "in": raw material received
    materials: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()  # series `process` tag values that belong (besides name)
    display: str = ""  # the name people read ("" shows the id)

    def owns(self, tag: str) -> bool:
        """Whether a series or ticket `process` value names this process."""
        return tag == self.name or tag in self.tags


@dataclass(frozen=True, slots=True)
class PlantConfig:
    """Processes, shifts and the plant's time zone: configuration, not code."""

    processes: tuple[ProcessConfig, ...]
    shifts: tuple[Shift, ...] = (
        Shift("early", 6, 14),
        Shift("late", 14, 22),
        Shift("night", 22, 6),
    )
    tz: str = "UTC"
    night: tuple[int, int] = (0, 5)  # [start, end) local hours
    idle_margin_hours: int = 1

    def process_of(self, tag: str) -> str | None:
        """The id of the process a series' or ticket's `process` value belongs to."""
        for p in self.processes:
            if p.owns(tag):
                return p.name
        return None

    def __post_init__(self) -> None:
        names = [s.name for s in self.shifts]
        if DAY_PERIOD in names or len(set(names)) != len(names):
            raise ValueError(f"shift names must be unique and not {DAY_PERIOD!r}: {names}")
        for s in self.shifts:
            if not (0 <= s.start_hour < 24 and 0 <= s.end_hour < 24):
                raise ValueError(f"shift {s.name!r}: hours are 0..23")


@dataclass(slots=True)
class Timeline:
    """Hour intervals of a window on the local calendar: boundaries and, per hour, its local hour,
    local weekday (0 = Monday) and local day index."""

    boundaries: list[int]
    until_ms: int
    local_hour: list[int] = field(default_factory=list)
    weekday: list[int] = field(default_factory=list)
    day: list[int] = field(default_factory=list)
    day_bounds: list[int] = field(default_factory=list)  # day k is [day_bounds[k], [k+1])

    @classmethod
    def of(cls, from_ms: int, to_ms: int, until_ms: int, tz: ZoneInfo) -> Timeline:
        b = grid(from_ms, to_ms, Interval.HOUR, tz)
        t = cls(b, until_ms)
        t.day_bounds = grid(from_ms, to_ms, Interval.DAY, tz)
        for start in b[:-1]:
            local = datetime.fromtimestamp(start / 1000, UTC).astimezone(tz)
            t.local_hour.append(local.hour)
            t.weekday.append(local.weekday())
            t.day.append(bisect.bisect_right(t.day_bounds, start) - 1)
        return t

    @property
    def hours(self) -> int:
        return len(self.boundaries) - 1

    @property
    def days(self) -> int:
        return len(self.day_bounds) - 1


def _process_of(e: EventRecord, processes: Sequence[ProcessConfig]) -> ProcessConfig | None:
    named = e.attrs.get("process")
    material = str(e.attrs.get("material", "")).strip()
    for p in processes:
        if named is not None and p.owns(str(named).strip()):
            return p
    if named is None:
        for p in processes:
            if material and material in p.materials:
                return p
    return None


def production(
    events: Iterable[EventRecord], timeline: Timeline, processes: Sequence[ProcessConfig]
) -> dict[str, list[float]]:
    """Tonnes per process and hour of `timeline` (module docstring)."""
    b = timeline.boundaries
    out = {p.name: [0.0] * timeline.hours for p in processes}
    seen: set[tuple[str, str]] = set()
    for e in sorted(events, key=lambda e: (e.ts_ms, e.device_id, e.seq)):
        if e.kind != TICKET_KIND or e.quality & 3 == Quality.BAD:
            continue
        k = bisect.bisect_right(b, e.ts_ms) - 1
        if not 0 <= k < timeline.hours:
            continue
        p = _process_of(e, processes)
        net = number(e.attrs.get("net_kg"))
        if p is None or net is None or net <= 0:
            continue
        outbound = str(e.attrs.get("direction", "")).strip().lower() in _OUTBOUND
        if outbound != (p.direction == "out"):
            continue
        ticket = e.attrs.get("ticket")
        if ticket is not None:
            ident = (e.device_id, str(ticket))
            if ident in seen:
                continue
            seen.add(ident)
        out[p.name][k] += net / 1000.0
    return out


def idle_hours(tonnes: Sequence[float], margin: int) -> list[bool]:
    """Per hour: no production in it nor within `margin` hours either side."""
    n = len(tonnes)
    return [
        all(tonnes[j] <= 0 for j in range(max(0, i - margin), min(n, i + margin + 1)))
        for i in range(n)
    ]


def hourly_values(fig: Figure, factor: float) -> list[float | None]:
    """An hourly figure scaled to the sum unit; None for any hour that is not complete."""
    return [
        v * factor if v is not None and fig.status(k) is Status.COMPLETE else None
        for k, v in enumerate(fig.values)
    ]


@dataclass(frozen=True, slots=True)
class IntensityRow:
    process: str
    medium: str
    unit: str  # of consumption; intensity is unit/t
    period: str  # DAY_PERIOD or a shift name
    from_ms: int
    to_ms: int
    consumption: float | None  # None when any hour is not complete
    tonnes: float
    intensity: float | None
    history_median: float | None = None  # of the same period kind over the previous days
    ratio: float | None = None  # intensity / history_median


def _periods(timeline: Timeline, shifts: Sequence[Shift]) -> dict[tuple[str, int], list[int]]:
    """(period, day index) -> hour indices: whole days, and each shift of each day."""
    out: dict[tuple[str, int], list[int]] = {}
    for i in range(timeline.hours):
        d, h = timeline.day[i], timeline.local_hour[i]
        out.setdefault((DAY_PERIOD, d), []).append(i)
        for s in shifts:
            if s.holds(h):
                starts_yesterday = s.start_hour >= s.end_hour and h < s.end_hour
                out.setdefault((s.name, d - 1 if starts_yesterday else d), []).append(i)
    return out


def intensities(
    consumption: Sequence[list[float | None]],
    tonnes: Sequence[float],
    timeline: Timeline,
    shifts: Sequence[Shift],
    *,
    process: str,
    medium: str,
    unit: str,
    history_days: int = 14,
) -> list[IntensityRow]:
    """Intensity per day and per shift of one process and medium; `consumption` is the hourly
    values of each of its counters. Each row's trend compares it with the median of the same
    period over the `history_days` days before it."""
    rows: list[IntensityRow] = []
    past: dict[str, list[tuple[int, float]]] = {}
    b = timeline.boundaries
    for (period, day), hours in sorted(
        _periods(timeline, shifts).items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        if day < 0 or b[hours[0]] >= timeline.until_ms:
            continue
        values = [series[i] for series in consumption for i in hours]
        total = (
            None
            if any(v is None for v in values)
            else math.fsum(v for v in values if v is not None)
        )
        t = math.fsum(tonnes[i] for i in hours)
        value = total / t if total is not None and t > 0 else None
        history = [v for d, v in past.get(period, []) if day - history_days <= d < day]
        hist = sorted(history)
        med = None
        if hist:
            mid = len(hist) // 2
            med = hist[mid] if len(hist) % 2 else (hist[mid - 1] + hist[mid]) / 2
        ratio = value / med if value is not None and med else None
        rows.append(
            IntensityRow(
                process,
                medium,
                unit,
                period,
                b[hours[0]],
                b[hours[-1] + 1],
                total,
                t,
                value,
                med,
                ratio,
            )
        )
        if value is not None:
            past.setdefault(period, []).append((day, value))
    return rows
