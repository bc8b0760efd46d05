"""Production besides weighbridge tickets: production counters and operator entries, and which
source wins. Pure: series, readings and entries in, tonnes per process and hour out.

Contract (docs/figures.md, "Where production comes from"):
- A **production counter** is a series whose `medium` tag is one of `Media.production`
  (`product`) and whose unit is a mass unit of `wire.units.PRODUCTION_UNITS` (`t`, `kg`, `g`),
  its metric not marking a per-interval amount: a cumulative register of tonnes made (a belt
  scale's totaliser). It is cleaned and attributed to hours by the same counter rules as an
  energy register; its hourly increase, in tonnes, is the production of the process its
  `process` tag belongs to. Hours it does not cover count what is known of them (a lower bound).
- **Precedence, per process**: production counters when the process has any; else its tickets.
  Never both, so a belt scale and the weighbridge do not count one product twice.
- An **operator entry** (process, [from_ms, to_ms), tonnes) counts only where nothing measured
  covers it: when no hour its window overlaps holds measured production (counter or ticket) of
  that process. It is then spread over its window in proportion to time. A superseded entry
  never counts (`cloud.storage.production`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloud.apps.figures import CounterPolicy, Row, attribute, clean_counter
from cloud.apps.intensity import PlantConfig, Timeline
from cloud.storage.reads import SeriesInfo
from wire.units import NOT_CUMULATIVE_SUFFIXES, PRODUCTION_UNITS

COUNTERS = "counters"
TICKETS = "tickets"
ENTRIES = "entries"


@dataclass(frozen=True, slots=True)
class Entry:
    """An operator's production entry in effect (not superseded)."""

    entry_id: int
    process: str
    from_ms: int
    to_ms: int
    tonnes: float


def tonnes_factor(s: SeriesInfo, media: frozenset[str]) -> float | None:
    """The factor to tonnes when `s` is a production counter, else None."""
    if s.medium not in media or s.metric.lower().endswith(NOT_CUMULATIVE_SUFFIXES):
        return None
    return PRODUCTION_UNITS.get(s.unit.strip())


def counter_tonnes(
    series: Sequence[SeriesInfo],
    rows: Mapping[int, Sequence[Row]],
    timeline: Timeline,
    config: PlantConfig,
    media: frozenset[str],
    policy: CounterPolicy,
) -> dict[str, list[float]]:
    """Tonnes per hour of each process that has production counters."""
    out: dict[str, list[float]] = {}
    for s in series:
        factor = tonnes_factor(s, media)
        process = config.process_of(s.process)
        if factor is None or process is None:
            continue
        trace = clean_counter(rows.get(s.series_id, ()), policy)
        fig = attribute(
            trace,
            timeline.boundaries,
            until_ms=timeline.until_ms,
            max_step_ms=policy.max_step_ms,
        )
        hourly = out.setdefault(process, [0.0] * timeline.hours)
        for k, v in enumerate(fig.values):
            if v is not None:
                hourly[k] += v * factor
    return out


def add_entries(
    tonnes: dict[str, list[float]], entries: Sequence[Entry], timeline: Timeline
) -> list[int]:
    """Spread each entry over the hours of its window where nothing measured covers it (module
    docstring), in place; the ids of the entries that counted."""
    b = timeline.boundaries
    measured = {p: list(v) for p, v in tonnes.items()}
    used = []
    for e in sorted(entries, key=lambda e: (e.from_ms, e.entry_id)):
        hours = measured.get(e.process)
        if hours is None or e.to_ms <= e.from_ms:
            continue
        overlap = [
            (k, min(b[k + 1], e.to_ms) - max(b[k], e.from_ms))
            for k in range(timeline.hours)
            if b[k] < e.to_ms and e.from_ms < b[k + 1]
        ]
        if not overlap or any(hours[k] > 0 for k, _ in overlap):
            continue
        span = e.to_ms - e.from_ms
        for k, ms in overlap:
            tonnes[e.process][k] += e.tonnes * ms / span
        used.append(e.entry_id)
    return used
