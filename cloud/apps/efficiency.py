"""The efficiency app: intensity per process, medium, day and shift, and anomalies with evidence,
computed from the platform tables (it only reads: `ReadStore`).

`analyse` is pure (series, their readings and the ticket events in; a `Report` out) so the
synthetic plant (tests/cloud/apps/plant.py) and the store path compute the same thing; `load`
fetches what `analyse` needs from a store.

Which detector looks at which series is data (`Media`): baseload on the media of
`Media.baseload` (electricity by default) over a process's idle hours, night flow on
`Media.night` (water, gas, compressed air) over idle night hours, stuck on every counter,
silent on every device, step on every process and medium with production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from cloud.apps import anomalies, intensity, plantfile, production
from cloud.apps.anomalies import Finding, Params, Subject
from cloud.apps.figures import (
    TICKET_KIND,
    CounterPolicy,
    Role,
    Row,
    attribute,
    clean_counter,
    counter_unit,
    roles,
)
from cloud.apps.intensity import DAY_PERIOD, IntensityRow, PlantConfig, Timeline
from cloud.storage.reads import EventRecord, ReadStore, SeriesFilter, SeriesInfo

EVENT_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Media:
    baseload: frozenset[str] = frozenset({"electricity"})
    night: frozenset[str] = frozenset({"water", "gas", "compressed_air", "air"})
    production: frozenset[str] = frozenset({"product"})  # production counters (mass units)


@dataclass(slots=True)
class Report:
    from_ms: int
    until_ms: int
    intensity: list[IntensityRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tonnes: dict[str, float] = field(default_factory=dict)
    # per process: tonnes by source (production.COUNTERS, TICKETS, ENTRIES)
    sources: dict[str, dict[str, float]] = field(default_factory=dict)
    entries_used: list[int] = field(default_factory=list)  # operator entries that counted


def label(s: SeriesInfo) -> str:
    return f"{s.device_id}/{s.metric}"


def analyse(
    series: Sequence[SeriesInfo],
    rows: Mapping[int, Sequence[Row]],
    events: Sequence[EventRecord],
    config: PlantConfig,
    *,
    from_ms: int,
    to_ms: int,
    until_ms: int,
    params: Params | None = None,
    media: Media | None = None,
    policy: CounterPolicy | None = None,
    entries: Sequence[production.Entry] = (),
) -> Report:
    """Intensity and findings over [from_ms, to_ms) with data up to `until_ms`. Production comes
    from counters, tickets and operator `entries` in that precedence (cloud.apps.production)."""
    params = params or Params()
    media = media or Media()
    policy = policy or CounterPolicy()
    tz = ZoneInfo(config.tz)
    timeline = Timeline.of(from_ms, to_ms, until_ms, tz)
    report = Report(from_ms, until_ms)
    tonnes = intensity.production(events, timeline, config.processes)
    counted = production.counter_tonnes(series, rows, timeline, config, media.production, policy)
    tonnes.update(counted)  # a process with production counters takes its production from them
    report.sources = {
        p: {production.COUNTERS if p in counted else production.TICKETS: sum(v)}
        for p, v in tonnes.items()
    }
    before = {p: sum(v) for p, v in tonnes.items()}
    report.entries_used = production.add_entries(tonnes, entries, timeline)
    report.tonnes = {p: sum(v) for p, v in tonnes.items()}
    for p, total in report.tonnes.items():
        if total > before[p]:
            report.sources[p][production.ENTRIES] = total - before[p]
    idle = {p: intensity.idle_hours(v, config.idle_margin_hours) for p, v in tonnes.items()}
    night_start, night_end = config.night
    night = [night_start <= h < night_end for h in timeline.local_hour]

    hourly: dict[int, list[float | None]] = {}
    units: dict[int, str] = {}
    by_device: dict[str, list[int]] = {}
    counter_roles = roles(series)
    # A series belongs to the process whose id or tags name its `process` tag (PlantConfig).
    process_of = {
        s.series_id: owner for s in series if (owner := config.process_of(s.process)) is not None
    }
    for s in series:
        points = rows.get(s.series_id, ())
        by_device.setdefault(s.device_id, []).extend(t for t, _, _ in points)
        if counter_roles.get(s.series_id) is not Role.CONSUMPTION:
            continue
        unit_factor = counter_unit(s.unit)
        assert unit_factor is not None  # a counter has a counter unit
        unit, factor = unit_factor
        trace = clean_counter(points, policy)
        fig = attribute(
            trace, timeline.boundaries, until_ms=until_ms, max_step_ms=policy.max_step_ms
        )
        values = intensity.hourly_values(fig, factor)
        hourly[s.series_id], units[s.series_id] = values, unit
        proc = process_of.get(s.series_id)
        subject = Subject(label(s), s.series_id, s.device_id, proc or s.process, s.medium)
        report.findings += anomalies.stuck(
            subject, trace, values, timeline, unit, params, max_step_ms=policy.max_step_ms
        )
        if proc is not None:
            if s.medium in media.baseload:
                report.findings += anomalies.excess(
                    "baseload", subject, values, idle[proc], timeline, unit, params
                )
            if s.medium in media.night:
                mask = [a and b for a, b in zip(idle[proc], night, strict=True)]
                report.findings += anomalies.excess(
                    "night_flow", subject, values, mask, timeline, unit, params
                )
        elif s.medium in media.night:
            report.findings += anomalies.excess(
                "night_flow", subject, values, night, timeline, unit, params
            )

    for device, stamps in sorted(by_device.items()):
        report.findings += anomalies.silent(
            Subject(device, device_id=device), stamps, from_ms, until_ms, params
        )

    groups: dict[tuple[str, str, str], list[list[float | None]]] = {}
    for s in series:
        proc = process_of.get(s.series_id)
        if s.series_id in hourly and proc is not None:
            groups.setdefault((proc, s.medium, units[s.series_id]), []).append(hourly[s.series_id])
    for (process, medium, unit), members in sorted(groups.items()):
        rows_ = intensity.intensities(
            members,
            tonnes[process],
            timeline,
            config.shifts,
            process=process,
            medium=medium,
            unit=unit,
        )
        report.intensity += rows_
        daily = [(r.from_ms, r.to_ms, r.intensity) for r in rows_ if r.period == DAY_PERIOD]
        report.findings += anomalies.step(
            Subject(f"{process}/{medium}", process=process, medium=medium),
            daily,
            f"{unit}/t",
            params,
        )
    report.findings.sort(key=lambda f: (f.from_ms, f.kind, f.subject))
    return report


async def load(
    store: ReadStore,
    config: PlantConfig,
    *,
    from_ms: int,
    to_ms: int,
    until_ms: int,
    params: Params | None = None,
    media: Media | None = None,
    policy: CounterPolicy | None = None,
    budget_rows: int = 5_000_000,
) -> Report:
    """`analyse` over the series and tickets a store holds for [from_ms, to_ms).

    The detectors look back `lookback_days` within the window itself: ask for the history you
    want judged against (the dashboard asks for 30 days)."""
    policy = policy or CounterPolicy()
    series = await store.list_series(SeriesFilter())
    rows: dict[int, list[Row]] = {}
    async for chunk in store.series_windows(
        [s.series_id for s in series],
        from_ms,
        to_ms,
        context_ms=policy.context_ms,
        budget_rows=budget_rows,
    ):
        for series_id, points in chunk:
            rows[series_id] = points
    events = await store.events(None, TICKET_KIND, from_ms, to_ms, EVENT_LIMIT)
    # an entry names its process by id or by one of its tags, like a series or a ticket
    entries = [
        production.Entry(r.entry_id, owner, r.from_ms, r.to_ms, r.tonnes)
        for r in await store.list_production(from_ms, to_ms, in_effect_only=True)
        if (owner := config.process_of(r.process)) is not None
    ]
    return analyse(
        series,
        rows,
        events,
        config,
        from_ms=from_ms,
        to_ms=to_ms,
        until_ms=until_ms,
        params=params,
        media=media,
        policy=policy,
        entries=entries,
    )


async def named(store: ReadStore, from_ms: int, to_ms: int) -> list[str]:
    """The process names the data of a window gives: its tickets' `process` attributes, the
    `process` tags of production counters and the processes of operators' entries."""
    tickets = await store.events(None, TICKET_KIND, from_ms, to_ms, EVENT_LIMIT)
    names = {str(p) for e in tickets if (p := e.attrs.get("process")) is not None}
    media = Media().production
    series = await store.list_series(SeriesFilter())
    names |= {s.process for s in series if production.tonnes_factor(s, media) is not None}
    entries = await store.list_production(from_ms, to_ms, in_effect_only=True)
    names |= {e.process for e in entries}
    return sorted(n for n in names if n)


async def plant_for(store: ReadStore, config: PlantConfig, from_ms: int, to_ms: int) -> PlantConfig:
    """The configured plant, or, when it names no process, the processes of the window's data."""
    if config.processes:
        return config
    return plantfile.for_window(config, await named(store, from_ms, to_ms))
