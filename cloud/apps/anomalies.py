"""Anomaly detectors with evidence. Pure: hourly figures, cleaned counters and timestamps in,
findings out. Every parameter is data (`Params`); docs/figures.md ("Anomalies with evidence")
states each rule for users.

Each finding names its series (or device, or process and medium), the window, what was expected
(the median of comparable periods, with the MAD and how many there were) and what was seen.
Comparable periods are the same hours of the last `lookback_days` days before (of the same
weekday only when `same_weekday`) that were not themselves found anomalous: a fault that lasts
is never learnt as normal, however long it lasts. Consecutive anomalous days make one finding.

- baseload: mean consumption per idle hour of a day (no production, see `cloud.apps.intensity`)
  above the band of the same figure on comparable days.
- night_flow: the same for the night hours that are idle (a leak).
- stuck: a counter whose readings keep arriving but do not move through `stuck_hours` or more
  hours in which it normally moves (its median over the same hour of the comparable days > 0).
  A counter that is flat every night is not stuck at night. Expected: the sum of the same-hour
  medians over the run; seen: 0.
- silent: a device with no reading for longer than max(`silent_min_hours`, `silent_factor` x its
  median interval between readings), up to `until_ms`.
- step: a process's daily intensity (unit/t) leaving the band of the previous days for
  `step_confirm_days` days in a row; the baseline then starts again at the step.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloud.apps.figures import HOUR_MS, Trace
from cloud.apps.intensity import Timeline
from cloud.apps.robust import Band, Baseline, median


@dataclass(frozen=True, slots=True)
class Params:
    lookback_days: int = 14
    min_history: int = 5
    same_weekday: bool = False
    min_hours: int = 3  # fewest known hours in a day's window for it to be judged
    excess_band: Band = Band(k=6.0, rel_floor=0.5, abs_floor=0.0)
    stuck_hours: float = 6.0
    silent_min_hours: float = 1.0
    silent_factor: float = 10.0
    step_band: Band = Band(k=6.0, rel_floor=0.15, abs_floor=0.0)
    step_confirm_days: int = 3


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # baseload | night_flow | stuck | silent | step
    subject: str  # "device/metric", a device id, or "process/medium"
    from_ms: int
    to_ms: int
    expected: float
    seen: float
    unit: str
    basis: str  # how `expected` was found, in words and numbers
    series_id: int | None = None
    device_id: str | None = None
    process: str = ""
    medium: str = ""

    def describe(self) -> str:
        return (
            f"{self.kind} {self.subject} [{self.from_ms}, {self.to_ms}): "
            f"expected {self.expected:.4g} {self.unit}, seen {self.seen:.4g} {self.unit} "
            f"({self.basis})"
        )


@dataclass(slots=True)
class Subject:
    """Who a finding is about."""

    name: str
    series_id: int | None = None
    device_id: str | None = None
    process: str = ""
    medium: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _comparable(
    day: int, history: dict[int, float], timeline: Timeline, first_hour: dict[int, int], p: Params
) -> Baseline | None:
    days = sorted(d for d in history if d < day)
    if p.same_weekday:
        wd = timeline.weekday[first_hour[day]]
        days = [d for d in days if timeline.weekday[first_hour[d]] == wd]
    days = days[-p.lookback_days :]
    if len(days) < p.min_history:
        return None
    return Baseline.of(history[d] for d in days)


def excess(
    kind: str,
    subject: Subject,
    hourly: Sequence[float | None],
    mask: Sequence[bool],
    timeline: Timeline,
    unit: str,
    p: Params,
) -> list[Finding]:
    """Days whose mean per masked hour lies above the band of comparable days (baseload,
    night_flow); consecutive such days make one finding."""
    by_day: dict[int, list[int]] = {}
    for i, m in enumerate(mask):
        if m and hourly[i] is not None and timeline.boundaries[i + 1] <= timeline.until_ms:
            by_day.setdefault(timeline.day[i], []).append(i)
    history: dict[int, float] = {}
    first_hour = {d: hours[0] for d, hours in by_day.items()}
    out: list[Finding] = []
    open_: tuple[int, list[int], Baseline] | None = None  # last anomalous day, its hours, baseline

    def close() -> None:
        if open_ is not None:
            _, hours, base = open_
            seen = math.fsum(hourly[i] or 0.0 for i in hours) / len(hours)
            out.append(_finding(kind, subject, timeline, hours, base, seen, f"{unit}/h", p))

    for day in sorted(by_day):
        hours = by_day[day]
        if len(hours) < p.min_hours:
            continue
        rate = math.fsum(hourly[i] or 0.0 for i in hours) / len(hours)
        base = _comparable(day, history, timeline, first_hour, p)
        if base is not None and base.above(rate, p.excess_band):
            if open_ is not None and open_[0] == day - 1:
                open_ = (day, open_[1] + hours, open_[2])
            else:
                close()
                open_ = (day, list(hours), base)
            continue
        history[day] = rate
    close()
    return out


def _finding(
    kind: str,
    subject: Subject,
    timeline: Timeline,
    hours: Sequence[int],
    base: Baseline,
    seen: float,
    unit: str,
    p: Params,
) -> Finding:
    basis = f"median of {base.n} comparable days, MAD {base.mad:.4g}"
    return Finding(
        kind,
        subject.name,
        timeline.boundaries[hours[0]],
        timeline.boundaries[hours[-1] + 1],
        base.median,
        seen,
        unit,
        basis,
        subject.series_id,
        subject.device_id,
        subject.process,
        subject.medium,
    )


def stuck(
    subject: Subject,
    trace: Trace,
    hourly: Sequence[float | None],
    timeline: Timeline,
    unit: str,
    p: Params,
    *,
    max_step_ms: int,
) -> list[Finding]:
    """Runs of a counter that do not move while readings keep arriving (module docstring)."""
    ts, level = trace.ts, trace.level
    b = timeline.boundaries
    out: list[Finding] = []
    i = 0
    while i < len(ts):
        j = i
        while (
            j + 1 < len(ts)
            and level[j + 1] == level[i]
            and j + 1 not in trace.breaks
            and ts[j + 1] - ts[j] <= max_step_ms
        ):
            j += 1
        if ts[j] - ts[i] >= p.stuck_hours * HOUR_MS and ts[i] >= b[0]:
            first = bisect.bisect_left(b, ts[i])  # the first whole hour of the run
            last = bisect.bisect_right(b, ts[j]) - 1  # hours [first, last) lie inside it
            medians = []
            for k in range(first, min(last, timeline.hours)):
                same = [
                    v
                    for kk in range(k - 24 * p.lookback_days, k, 24)
                    if kk >= 0 and (v := hourly[kk]) is not None
                ]
                if len(same) >= p.min_history:
                    medians.append(median(same))
            moving = sum(1 for m in medians if m > 0)
            if moving >= p.stuck_hours:
                out.append(
                    Finding(
                        "stuck",
                        subject.name,
                        ts[i],
                        ts[j],
                        math.fsum(medians),
                        0.0,
                        unit,
                        f"sum of same-hour medians over {len(medians)} hours; "
                        f"{j - i + 1} readings, all {level[i]:.6g}",
                        subject.series_id,
                        subject.device_id,
                        subject.process,
                        subject.medium,
                    )
                )
        i = j + 1
    return out


def silent(
    subject: Subject, timestamps: Sequence[int], from_ms: int, until_ms: int, p: Params
) -> list[Finding]:
    """Silences of a device: gaps between its readings (all series merged) beyond the limit."""
    ts = sorted(set(timestamps))
    if len(ts) < 3:
        return []
    typical = median([float(b - a) for a, b in zip(ts, ts[1:], strict=False)])
    limit = max(p.silent_min_hours * HOUR_MS, p.silent_factor * typical)
    out = []
    for a, b in [*zip(ts, ts[1:], strict=False), (ts[-1], until_ms)]:
        if b - a > limit and b > from_ms:
            out.append(
                Finding(
                    "silent",
                    subject.name,
                    a,
                    b,
                    typical / 1000.0,
                    (b - a) / 1000.0,
                    "s between readings",
                    f"median interval of {len(ts)} readings; limit {limit / 1000.0:.4g} s",
                    device_id=subject.device_id,
                )
            )
    return out


def step(
    subject: Subject,
    daily: Sequence[tuple[int, int, float | None]],
    unit: str,
    p: Params,
) -> list[Finding]:
    """Steps in a daily intensity ((from_ms, to_ms, value) per day): the first of
    `step_confirm_days` known days all on one side outside the band of the days before."""
    known = [(a, b, v) for a, b, v in daily if v is not None]
    out: list[Finding] = []
    start = 0  # the baseline starts here (again after each step)
    i = 0
    while i < len(known):
        history = [v for _, _, v in known[max(start, i - p.lookback_days) : i]]
        confirm = known[i : i + p.step_confirm_days]
        if len(history) >= p.min_history and len(confirm) == p.step_confirm_days:
            base = Baseline.of(history)
            assert base is not None
            values = [v for _, _, v in confirm]
            up = all(base.above(v, p.step_band) for v in values)
            down = all(base.below(v, p.step_band) for v in values)
            if up or down:
                out.append(
                    Finding(
                        "step",
                        subject.name,
                        confirm[0][0],
                        confirm[-1][1],
                        base.median,
                        median(values),
                        unit,
                        f"median of {base.n} previous days, MAD {base.mad:.4g}; "
                        f"{len(values)} days in a row {'above' if up else 'below'}",
                        process=subject.process,
                        medium=subject.medium,
                    )
                )
                start = i
                i += p.step_confirm_days
                continue
        i += 1
    return out
