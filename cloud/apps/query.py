"""Read API under `/v1/` for dashboards and apps, behind the read token (or the admin token).

    GET /v1/devices                         devices with sync state and latest health
    GET /v1/devices/{id}/health?limit=      the latest health report and the history
    GET /v1/series?device=&site=&area=&process=&medium=&metric=
    GET /v1/series/{id}/readings?from_ms=&to_ms=&limit=            raw, oldest first
    GET /v1/series/{id}/readings?from_ms=&to_ms=&bucket_ms=&agg=   avg|min|max|last|sum|count
    GET /v1/latest?<same filters as /v1/series>
    GET /v1/events?device=&kind=&from_ms=&to_ms=&limit=
    GET /v1/figures/consumption?from_ms=&to_ms=&interval=&tz=&group_by=&detail=&<filters>
    GET /v1/figures/materials?from_ms=&to_ms=&interval=&tz=&device=&kind=

Time ranges are [from_ms, to_ms) in epoch milliseconds; the default is the last 24 hours, and
for figures the current local day of `tz`. Raw reads are capped (`limits.raw_readings_limit`),
a bucketed read at 100,000 buckets, a figure at 10,000 intervals, 400 days and
`FIGURE_ROW_BUDGET` readings read. Figures are defined in `cloud.apps.figures` and docs/figures.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.apps import figures, params
from cloud.apps.context import AppContext
from cloud.apps.figures import CounterPolicy, Figure, Interval, Role, Trace
from cloud.apps.views import (
    bucket_view,
    consumption_view,
    device_view,
    event_view,
    health_view,
    latest_view,
    materials_view,
    point_view,
    series_view,
)
from cloud.bearer import require_bearer
from cloud.errors import RejectedError, RowBudgetError
from cloud.storage.reads import Agg, CounterWindow, ReadStore, SeriesFilter, SeriesInfo
from wire.admin import DeviceList
from wire.http import (
    CONSUMPTION_PATH,
    DEVICE_HEALTH_PATH,
    DEVICES_PATH,
    EVENTS_PATH,
    LATEST_PATH,
    MATERIALS_PATH,
    READINGS_PATH,
    SERIES_PATH,
)
from wire.query import BucketedReadings, EventList, LatestList, RawReadings, SeriesList

DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000
MAX_BUCKETS = 100_000
FILTERS = ("device", "metric", "site", "area", "process", "medium")
GROUP_TAGS = ("device", "site", "area", "process", "medium")
MAX_INTERVALS = 10_000
MAX_FIGURE_RANGE_MS = 400 * DAY_MS
FIGURE_ROW_BUDGET = 5_000_000  # readings one figures request may read (about 5 s of work)
MAX_TICKETS = 100_000
HEALTH_HISTORY_DEFAULT = 20  # reports in a device's health answer; the store keeps 100
HEALTH_HISTORY_MAX = 100
DEFAULT_POLICY = CounterPolicy()
_TZ_NAME_MAX = 64  # the longest IANA name is about 30 characters


@dataclass
class SeriesResult:
    """One counter series: its role, its cleaned trace and its figure on each grid."""

    info: SeriesInfo
    role: Role
    unit: str  # the unit of the sums
    factor: float  # to that unit
    trace: Trace
    figures: dict[str, Figure] = field(default_factory=dict)


@dataclass
class GroupResult:
    key: dict[str, str]
    unit: str
    series: list[int]
    figures: dict[str, Figure]


async def counter_results(
    reads: ReadStore,
    series: list[SeriesInfo],
    grids: dict[str, list[int]],
    *,
    until_ms: int,
    policy: CounterPolicy,
    budget_rows: int = FIGURE_ROW_BUDGET,
) -> list[SeriesResult]:
    """The consumption figures of every counter among `series`, on each of `grids` (boundaries,
    all over the same [from, to)). Rows are read a chunk of series at a time and computed before
    the next chunk is read, so the event loop is never held for long."""
    role_of = figures.roles(series)
    by_id = {s.series_id: s for s in series if s.series_id in role_of}
    first = next(iter(grids.values()))
    from_ms, to_ms = first[0], first[-1]
    out = []
    probe_after = to_ms + policy.context_ms < until_ms
    windows: AsyncIterator[list[CounterWindow]]
    if all(b % HOUR_MS == 0 for g in grids.values() for b in g):
        # Every step inside one UTC hour falls in one interval: the roll-ups can stand for the
        # hours where the counter rules have nothing to do (`ReadStore.counter_windows`).
        windows = reads.counter_windows(
            list(by_id),
            from_ms,
            to_ms,
            context_ms=policy.context_ms,
            excursion_ms=policy.excursion_ms,
            budget_rows=budget_rows,
            probe_after=probe_after,
        )
    else:
        windows = _raw_windows(reads, list(by_id), from_ms, to_ms, policy, budget_rows, probe_after)
    async for chunk in windows:
        for window in chunk:
            sid = window.series_id
            info = by_id[sid]
            unit, factor = figures.COUNTER_UNITS[info.unit.strip()]
            trace = figures.clean_counter(window.rows, policy)
            trace.excluded += window.excluded
            result = SeriesResult(info, role_of[sid], unit, factor, trace)
            for name, boundaries in grids.items():
                result.figures[name] = figures.attribute(
                    trace, boundaries, until_ms=until_ms, max_step_ms=policy.max_step_ms
                )
            out.append(result)
    return out


async def _raw_windows(
    reads: ReadStore,
    ids: list[int],
    from_ms: int,
    to_ms: int,
    policy: CounterPolicy,
    budget_rows: int,
    probe_after: bool,  # noqa: FBT001
) -> AsyncIterator[list[CounterWindow]]:
    chunks = reads.series_windows(
        ids,
        from_ms,
        to_ms,
        context_ms=policy.context_ms,
        budget_rows=budget_rows,
        probe_after=probe_after,
    )
    async for chunk in chunks:
        yield [CounterWindow(sid, rows) for sid, rows in chunk]


def group_results(results: list[SeriesResult], group_by: tuple[str, ...]) -> list[GroupResult]:
    """Consumption counters summed per tag values (and unit), biggest first."""
    members: dict[tuple[str, ...], list[SeriesResult]] = {}
    for r in results:
        if r.role is not Role.CONSUMPTION:
            continue
        tags = {"device": r.info.device_id, **_tags(r.info)}
        members.setdefault((*(tags[t] for t in group_by), r.unit), []).append(r)
    groups = []
    for key, rs in members.items():
        names = rs[0].figures.keys()
        combined = {n: figures.combine([(r.figures[n], r.factor) for r in rs]) for n in names}
        groups.append(
            GroupResult(
                dict(zip(group_by, key[:-1], strict=True)),
                key[-1],
                [r.info.series_id for r in rs],
                combined,
            )
        )
    groups.sort(key=lambda g: (g.unit, -next(iter(g.figures.values())).total, list(g.key.values())))
    return groups


def _tags(s: SeriesInfo) -> dict[str, str]:
    return {"site": s.site, "area": s.area, "process": s.process, "medium": s.medium}


_bad = params.bad


def series_filter(q: Mapping[str, str], *, others: tuple[str, ...] = ()) -> SeriesFilter:
    unknown = set(q.keys()) - set(FILTERS) - set(others)
    if unknown:
        first = params.shown(sorted(unknown)[0])
        raise _bad(f"unknown filter {first}; use {', '.join(FILTERS)}")
    return SeriesFilter(**{name: q.get(name) for name in FILTERS})


def time_zone(q: Mapping[str, str]) -> ZoneInfo:
    name = q.get("tz") or "UTC"
    try:
        if len(name) > _TZ_NAME_MAX:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name the OS refuses
        raise _bad("tz must be an IANA time zone name, e.g. Europe/Berlin") from exc


def _choice(q: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = q.get(name) or default
    if value not in allowed:
        raise _bad(f"{name} must be one of {', '.join(allowed)}")
    return value


class QueryHandlers:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._readers = ctx.api

    def _auth(self, request: Request) -> None:
        require_bearer(request, self._readers)

    def _range(self, q: Mapping[str, str]) -> tuple[int, int]:
        to_ms = params.time_ms(q, "to_ms", self.ctx.now_ms() + 1)
        from_ms = params.time_ms(q, "from_ms", max(0, to_ms - DAY_MS))
        if from_ms >= to_ms:
            raise _bad("from_ms must be before to_ms")
        return from_ms, to_ms

    async def devices(self, request: Request) -> Response:
        self._auth(request)
        return responses.json_response(200, await device_list(self.ctx.reads))

    async def device_health(self, request: Request) -> Response:
        self._auth(request)
        device_id = params.device_id(request)
        q = params.query(request)
        for name in q:
            if name != "limit":
                raise _bad(f"unknown parameter {params.shown(name)}")
        limit = params.integer(q, "limit", HEALTH_HISTORY_DEFAULT, maximum=HEALTH_HISTORY_MAX)
        latest = await self.ctx.reads.latest_health(device_id)
        if not latest:
            raise RejectedError(404, responses.NOT_FOUND, reason="no health report")
        past = await self.ctx.reads.health_history(device_id, limit) if limit else []
        view = health_view(device_id, latest[0].received_ms, latest[0].body, [r.body for r in past])
        if view is None:
            raise RejectedError(404, responses.NOT_FOUND, reason="health report unreadable")
        return responses.json_response(200, view)

    async def series(self, request: Request) -> Response:
        self._auth(request)
        found = await self.ctx.reads.list_series(series_filter(params.query(request)))
        return responses.json_response(200, SeriesList(series=[series_view(s) for s in found]))

    async def latest(self, request: Request) -> Response:
        self._auth(request)
        found = await self.ctx.reads.latest(series_filter(params.query(request)))
        return responses.json_response(200, LatestList(latest=[latest_view(v) for v in found]))

    async def readings(self, request: Request) -> Response:
        self._auth(request)
        series_id = params.series_id(request)
        q = params.query(request)
        info = await self.ctx.reads.get_series(series_id)
        if info is None:
            raise RejectedError(404, responses.not_found("series"), reason="series not found")
        from_ms, to_ms = self._range(q)
        bucket_ms = params.integer(q, "bucket_ms", 0)
        if bucket_ms == 0:
            if "agg" in q:
                raise _bad("agg needs bucket_ms")
            cap = self.ctx.raw_readings_limit
            limit = params.integer(q, "limit", cap, minimum=1)
            points = await self.ctx.reads.readings(series_id, from_ms, to_ms, min(limit, cap))
            raw = RawReadings(
                series=series_view(info),
                from_ms=from_ms,
                to_ms=to_ms,
                points=[point_view(p) for p in points],
            )
            return responses.json_response(200, raw)
        try:
            agg = Agg(q.get("agg", "avg"))
        except ValueError as exc:
            raise _bad(f"agg must be one of {', '.join(a.value for a in Agg)}") from exc
        if (to_ms - from_ms) // bucket_ms > MAX_BUCKETS:
            raise _bad(f"more than {MAX_BUCKETS} buckets; widen bucket_ms")
        buckets = await self.ctx.reads.buckets(series_id, from_ms, to_ms, bucket_ms, agg)
        bucketed = BucketedReadings(
            series=series_view(info),
            from_ms=from_ms,
            to_ms=to_ms,
            bucket_ms=bucket_ms,
            agg=str(agg),
            points=[bucket_view(b) for b in buckets],
        )
        return responses.json_response(200, bucketed)

    async def events(self, request: Request) -> Response:
        self._auth(request)
        q = params.query(request)
        from_ms, to_ms = self._range(q)
        cap = self.ctx.raw_readings_limit
        limit = min(params.integer(q, "limit", cap, minimum=1), cap)
        found = await self.ctx.reads.events(q.get("device"), q.get("kind"), from_ms, to_ms, limit)
        return responses.json_response(200, EventList(events=[event_view(e) for e in found]))

    def _figure_window(
        self, q: Mapping[str, str], tz: ZoneInfo, default_interval: str
    ) -> tuple[int, int, Interval]:
        now = self.ctx.now_ms()
        day_start, day_end = figures.local_day(now, tz)
        to_ms = params.time_ms(q, "to_ms", day_end)
        default_from = day_start if to_ms == day_end else max(0, to_ms - DAY_MS)
        from_ms = params.time_ms(q, "from_ms", default_from)
        if from_ms >= to_ms:
            raise _bad("from_ms must be before to_ms")
        if to_ms - from_ms > MAX_FIGURE_RANGE_MS:
            raise _bad("a figure covers at most 400 days")
        allowed = tuple(i.value for i in Interval)
        interval = Interval(_choice(q, "interval", default_interval, allowed))
        return from_ms, to_ms, interval

    def _boundaries(self, from_ms: int, to_ms: int, interval: Interval, tz: ZoneInfo) -> list[int]:
        if interval is Interval.HOUR and (to_ms - from_ms) // 3_600_000 > MAX_INTERVALS:
            raise _bad(f"more than {MAX_INTERVALS} intervals; use a coarser interval")
        return figures.grid(from_ms, to_ms, interval, tz)

    async def consumption(self, request: Request) -> Response:
        self._auth(request)
        extra = ("from_ms", "to_ms", "interval", "tz", "group_by", "detail", "max_step_ms")
        q = params.query(request)
        flt = series_filter(q, others=extra)
        tz = time_zone(q)
        from_ms, to_ms, interval = self._figure_window(q, tz, "hour")
        raw_group = q.get("group_by", "medium")
        group_by = tuple(t for t in raw_group.split(",") if t) if raw_group != "none" else ()
        if len(set(group_by)) != len(group_by) or not set(group_by) <= set(GROUP_TAGS):
            raise _bad(f"group_by takes a comma list of {', '.join(GROUP_TAGS)}, or none")
        detail = _choice(q, "detail", "groups", ("groups", "series"))
        max_step_ms = params.integer(q, "max_step_ms", DEFAULT_POLICY.max_step_ms, minimum=1)
        if max_step_ms > DAY_MS:
            raise _bad("max_step_ms is at most one day")
        policy = CounterPolicy(max_step_ms=max_step_ms)
        boundaries = self._boundaries(from_ms, to_ms, interval, tz)
        until_ms = min(to_ms, self.ctx.now_ms() + 1)
        series = await self.ctx.reads.list_series(flt)
        try:
            results = await counter_results(
                self.ctx.reads, series, {"v": boundaries}, until_ms=until_ms, policy=policy
            )
        except RowBudgetError as exc:
            raise _bad("too many readings for one figure; narrow the range or the series") from exc
        groups = group_results(results, group_by)
        body = consumption_view(
            boundaries,
            until_ms=until_ms,
            interval=str(interval),
            tz=tz.key,
            group_by=group_by,
            groups=[(g.key, g.unit, g.series, g.figures["v"]) for g in groups],
            series=(
                [(r.info, str(r.role), r.trace, r.figures["v"]) for r in results]
                if detail == "series"
                else None
            ),
        )
        return responses.json_response(200, body)

    async def materials(self, request: Request) -> Response:
        self._auth(request)
        q = params.query(request)
        allowed = {"from_ms", "to_ms", "interval", "tz", "device", "kind"}
        unknown = set(q.keys()) - allowed
        if unknown:
            raise _bad(f"unknown parameter {params.shown(sorted(unknown)[0])}")
        tz = time_zone(q)
        from_ms, to_ms, interval = self._figure_window(q, tz, "day")
        boundaries = self._boundaries(from_ms, to_ms, interval, tz)
        kind = q.get("kind") or figures.TICKET_KIND
        found = await self.ctx.reads.events(q.get("device"), kind, from_ms, to_ms, MAX_TICKETS + 1)
        if len(found) > MAX_TICKETS:
            raise _bad(f"more than {MAX_TICKETS} tickets; narrow the range")
        report = figures.materials_received(found, boundaries, kind=kind)
        body = materials_view(report, interval=str(interval), tz=tz.key, kind=kind)
        return responses.json_response(200, body)


async def device_list(reads: ReadStore) -> DeviceList:
    """Every device, each with its latest health report when it has sent one."""
    devices = await reads.list_devices()
    health = {
        r.device_id: v
        for r in await reads.latest_health()
        if (v := health_view(r.device_id, r.received_ms, r.body)) is not None
    }
    return DeviceList(devices=[device_view(d, health=health.get(d.device_id)) for d in devices])


def routes(ctx: AppContext) -> list[Route]:
    h = QueryHandlers(ctx)
    e = ctx.endpoint
    return [
        Route(DEVICES_PATH, e("devices", h.devices), methods=["GET"]),
        Route(
            DEVICE_HEALTH_PATH.replace("{device_id}", "{device_id:path}"),
            e("device_health", h.device_health),
            methods=["GET"],
        ),
        Route(SERIES_PATH, e("series", h.series), methods=["GET"]),
        Route(READINGS_PATH, e("readings", h.readings), methods=["GET"]),
        Route(LATEST_PATH, e("latest", h.latest), methods=["GET"]),
        Route(EVENTS_PATH, e("events", h.events), methods=["GET"]),
        Route(CONSUMPTION_PATH, e("consumption", h.consumption), methods=["GET"]),
        Route(MATERIALS_PATH, e("materials", h.materials), methods=["GET"]),
    ]
