"""Read API under `/v1/` for dashboards and apps, behind the read token (or the admin token).

    GET /v1/devices                         devices with sync state
    GET /v1/series?device=&site=&area=&process=&medium=&metric=
    GET /v1/series/{id}/readings?from_ms=&to_ms=&limit=            raw, oldest first
    GET /v1/series/{id}/readings?from_ms=&to_ms=&bucket_ms=&agg=   avg|min|max|last|sum|count
    GET /v1/latest?<same filters as /v1/series>
    GET /v1/events?device=&kind=&from_ms=&to_ms=&limit=

Time ranges are [from_ms, to_ms) in epoch milliseconds; the default is the last 24 hours.
Raw reads are capped (`limits.raw_readings_limit`) and a bucketed read at 100,000 buckets.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.auth import require_bearer
from cloud.context import Context
from cloud.errors import RejectedError
from cloud.storage.base import Agg, SeriesFilter
from cloud.views import (
    bucket_view,
    device_view,
    event_view,
    latest_view,
    point_view,
    series_view,
)

DAY_MS = 24 * 3600 * 1000
MAX_BUCKETS = 100_000
FILTERS = ("device", "metric", "site", "area", "process", "medium")


def _bad(message: str) -> RejectedError:
    return RejectedError(400, responses.bad_request(message), reason=message)


def _int_param(request: Request, name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise _bad(f"{name} must be an integer") from exc
    if not minimum <= value < 2**62:
        raise _bad(f"{name} out of range")
    return value


def series_filter(request: Request) -> SeriesFilter:
    q = request.query_params
    unknown = set(q.keys()) - set(FILTERS)
    if unknown:
        raise _bad(f"unknown filter {sorted(unknown)[0]!r}; use {', '.join(FILTERS)}")
    return SeriesFilter(**{name: q.get(name) for name in FILTERS})


class QueryHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self._readers = cfg.read.merged(cfg.admin)

    def _auth(self, request: Request) -> None:
        require_bearer(request, self._readers)

    def _range(self, request: Request) -> tuple[int, int]:
        to_ms = _int_param(request, "to_ms", self.ctx.now_ms() + 1)
        from_ms = _int_param(request, "from_ms", max(0, to_ms - DAY_MS))
        if from_ms >= to_ms:
            raise _bad("from_ms must be before to_ms")
        return from_ms, to_ms

    async def devices(self, request: Request) -> Response:
        self._auth(request)
        devices = await self.ctx.store.list_devices()
        return responses.json_response(200, {"devices": [device_view(d) for d in devices]})

    async def series(self, request: Request) -> Response:
        self._auth(request)
        found = await self.ctx.store.list_series(series_filter(request))
        return responses.json_response(200, {"series": [series_view(s) for s in found]})

    async def latest(self, request: Request) -> Response:
        self._auth(request)
        found = await self.ctx.store.latest(series_filter(request))
        return responses.json_response(200, {"latest": [latest_view(v) for v in found]})

    async def readings(self, request: Request) -> Response:
        self._auth(request)
        series_id = request.path_params["series_id"]
        info = await self.ctx.store.get_series(series_id)
        if info is None:
            raise RejectedError(404, responses.NOT_FOUND, reason="series not found")
        from_ms, to_ms = self._range(request)
        bucket_ms = _int_param(request, "bucket_ms", 0)
        out: dict[str, object] = {"series": series_view(info), "from_ms": from_ms, "to_ms": to_ms}
        if bucket_ms == 0:
            if "agg" in request.query_params:
                raise _bad("agg needs bucket_ms")
            cap = self.ctx.config.limits.raw_readings_limit
            limit = _int_param(request, "limit", cap, minimum=1)
            points = await self.ctx.store.readings(series_id, from_ms, to_ms, min(limit, cap))
            out["points"] = [point_view(p) for p in points]
            return responses.json_response(200, out)
        try:
            agg = Agg(request.query_params.get("agg", "avg"))
        except ValueError as exc:
            raise _bad(f"agg must be one of {', '.join(a.value for a in Agg)}") from exc
        if (to_ms - from_ms) // bucket_ms > MAX_BUCKETS:
            raise _bad(f"more than {MAX_BUCKETS} buckets; widen bucket_ms")
        buckets = await self.ctx.store.buckets(series_id, from_ms, to_ms, bucket_ms, agg)
        out.update(bucket_ms=bucket_ms, agg=str(agg), points=[bucket_view(b) for b in buckets])
        return responses.json_response(200, out)

    async def events(self, request: Request) -> Response:
        self._auth(request)
        from_ms, to_ms = self._range(request)
        cap = self.ctx.config.limits.raw_readings_limit
        limit = min(_int_param(request, "limit", cap, minimum=1), cap)
        q = request.query_params
        found = await self.ctx.store.events(q.get("device"), q.get("kind"), from_ms, to_ms, limit)
        return responses.json_response(200, {"events": [event_view(e) for e in found]})


def routes(ctx: Context) -> list[Route]:
    h = QueryHandlers(ctx)
    e = ctx.endpoint
    return [
        Route("/v1/devices", e("devices", h.devices), methods=["GET"]),
        Route("/v1/series", e("series", h.series), methods=["GET"]),
        Route("/v1/series/{series_id:int}/readings", e("readings", h.readings), methods=["GET"]),
        Route("/v1/latest", e("latest", h.latest), methods=["GET"]),
        Route("/v1/events", e("events", h.events), methods=["GET"]),
    ]
