"""The plant dashboard at `/`: routes, the viewer's authentication, and the data behind a page.

Authentication: a *viewer* token (`DashboardConfig.viewer`) or the read token; the admin token
is refused here on purpose, so it never sits in a browser. A token arrives once, by the sign-in
form (`POST /login`) or as `/?token=...` (the link the demo prints), and is answered with a
redirect that drops it from the address bar and sets the `tierless_view` cookie: HttpOnly,
SameSite=Strict, Secure when the public URL is https. Scripts and apps may send
`Authorization: Bearer` instead. Without a valid token every page is a 401 sign-in page; the token
is never logged (keep uvicorn's access log off when `?token=` links are used: it logs queries).

Cost: one overview reads the series list, the newest reading of each series (one index probe each),
the devices, today's readings of the counter series only (`ReadStore.series_windows`: index
range scans), today's tickets and the trend series' last 24 hours. The plant part is shared by every
viewer for `cache_s`, so wall screens refreshing every few seconds cost one computation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.resources
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud.apps import dashboard_page, figures, fleet, fleet_page
from cloud.apps.context import AppContext
from cloud.apps.figures import Interval
from cloud.apps.overview import Overview, Trend, TrendRange
from cloud.apps.query import (
    DEFAULT_POLICY,
    FIGURE_ROW_BUDGET,
    MAX_TICKETS,
    SeriesResult,
    counter_results,
    group_results,
)
from cloud.bearer import BearerCheck
from cloud.errors import RowBudgetError
from cloud.storage.reads import Agg, SeriesFilter, SeriesInfo

COOKIE = "tierless_view"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
MAX_FORM_BYTES = 4096
HOUR_MS = 3_600_000
TREND_RANGES = {
    r.name: r
    for r in (
        TrendRange("1h", "last hour", HOUR_MS, 60_000),
        TrendRange("6h", "last 6 h", 6 * HOUR_MS, 2 * 60_000),
        TrendRange("24h", "last 24 h", 24 * HOUR_MS, 5 * 60_000),
        TrendRange("7d", "last 7 days", 7 * 24 * HOUR_MS, HOUR_MS),
    )
}
DEFAULT_RANGE = "24h"
MIN_FITTED_BUCKETS = 12  # a range fitted to fresh data still spans this many buckets
POWER_UNITS = ("W", "kW", "MW")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HTML_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@dataclass(frozen=True)
class DashboardConfig:
    viewer: BearerCheck = field(default_factory=BearerCheck)  # besides the read token
    timezone: str = "UTC"  # whose calendar day "today" is; `?tz=` overrides per page
    refresh_s: float = 5.0
    cache_s: float = 2.0  # how long one computed overview serves every viewer


def _b64(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode("utf-8")).decode("ascii").rstrip("=")


def _unb64(value: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _static(name: str) -> bytes:
    return importlib.resources.files("cloud.apps.static").joinpath(name).read_bytes()


class Dashboard:
    def __init__(self, ctx: AppContext, config: DashboardConfig) -> None:
        self.ctx = ctx
        self.config = config
        self._viewers = config.viewer.merged(ctx.read)
        self._secure = ctx.public_url.startswith("https://")
        self._cache: dict[str, tuple[float, Overview]] = {}
        self._lock = asyncio.Lock()
        self._assets = {
            "dashboard.css": (_static("dashboard.css"), "text/css; charset=utf-8"),
            "dashboard.js": (_static("dashboard.js"), "text/javascript; charset=utf-8"),
        }

    # -- authentication ---------------------------------------------------------------------

    def _accepts(self, token: str | None) -> bool:
        return bool(token) and self._viewers.accepts(f"Bearer {token}")

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization")
        if header is not None:
            return self._viewers.accepts(header)
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self._accepts(_unb64(cookie))

    def authorised(self, request: Request) -> bool:
        """Whether a request carries a viewer's token or session: other pages reuse the check."""
        return self._authorised(request)

    def html(self, body: str, status: int = 200) -> Response:
        return self._html(body, status)

    def _cookie(self, token: str, max_age: int = COOKIE_MAX_AGE_S) -> str:
        secure = "; Secure" if self._secure else ""
        return (
            f"{COOKIE}={_b64(token) if token else ''}; Path=/; Max-Age={max_age}; HttpOnly;"
            f" SameSite=Strict{secure}"
        )

    def _html(
        self, body: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        return Response(
            body, status, {**HTML_HEADERS, **(headers or {})}, media_type="text/html; charset=utf-8"
        )

    def _sign_in(self, message: str = "") -> Response:
        return self._html(dashboard_page.sign_in_page(message), 401)

    @staticmethod
    def _same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return origin is None
        return urlsplit(origin).netloc == request.headers.get("host", "")

    # -- handlers ---------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            if not self._accepts(token):
                return self._sign_in("That token was not accepted.")
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            location = "/" + (f"?{urlencode(rest)}" if rest else "")
            return Response(
                status_code=303,
                headers={**HTML_HEADERS, "location": location, "set-cookie": self._cookie(token)},
            )
        if not self._authorised(request):
            return self._sign_in()
        tz = self._tz(request)
        overview = await self.overview(tz)
        trend = await self.trend(
            overview, request.query_params.get("series"), request.query_params.get("range")
        )
        content = dashboard_page.content(overview, trend, list(TREND_RANGES.values()))
        sites = sorted({s.site for s in overview.series if s.site})
        refresh_ms = int(self.config.refresh_s * 1000)
        return self._html(dashboard_page.page(content, refresh_ms=refresh_ms, sites=sites))

    async def fragment(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response("sign in", 401, HTML_HEADERS, media_type="text/plain")
        overview = await self.overview(self._tz(request))
        trend = await self.trend(
            overview, request.query_params.get("series"), request.query_params.get("range")
        )
        return self._html(dashboard_page.content(overview, trend, list(TREND_RANGES.values())))

    async def fleet(self, request: Request) -> Response:
        """`/fleet`: every gateway's health (`cloud.apps.fleet`), for the same viewers."""
        if not self._authorised(request):
            return self._sign_in()
        found = await fleet.fleet(self.ctx.reads, self.ctx.now_ms())
        return self._html(fleet_page.page(fleet_page.content(found)))

    async def login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return self._sign_in("Sign in from this page.")
        body = await _small_body(request)
        token = (parse_qs(body).get("token") or [""])[0].strip() if body is not None else ""
        if not self._accepts(token):
            return self._sign_in("That token was not accepted.")
        return Response(
            status_code=303,
            headers={**HTML_HEADERS, "location": "/", "set-cookie": self._cookie(token)},
        )

    async def logout(self, request: Request) -> Response:
        if not self._same_origin(request):
            return self._sign_in()
        return Response(
            status_code=303,
            headers={**HTML_HEADERS, "location": "/", "set-cookie": self._cookie("", 0)},
        )

    async def asset(self, request: Request) -> Response:
        found = self._assets.get(request.path_params["name"])
        if found is None:
            return Response("not found", 404, media_type="text/plain")
        data, media_type = found
        headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
        return Response(data, 200, headers, media_type=media_type)

    def _tz(self, request: Request) -> ZoneInfo:
        name = request.query_params.get("tz") or self.config.timezone
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(self.config.timezone)

    # -- data -------------------------------------------------------------------------------

    async def overview(self, tz: ZoneInfo) -> Overview:
        """The plant overview for `tz`, from the cache while it is younger than `cache_s`."""
        key = tz.key
        hit = self._cache.get(key)
        if hit is not None and self.ctx.monotonic() - hit[0] < self.config.cache_s:
            return hit[1]
        async with self._lock:  # one computation at a time; the others wait and reuse it
            hit = self._cache.get(key)
            if hit is not None and self.ctx.monotonic() - hit[0] < self.config.cache_s:
                return hit[1]
            overview = await self._compute(tz)
            self._cache[key] = (self.ctx.monotonic(), overview)
            return overview

    async def _compute(self, tz: ZoneInfo) -> Overview:
        reads = self.ctx.reads
        now = self.ctx.now_ms()
        day = figures.local_day(now, tz)
        hours = figures.grid(day[0], day[1], Interval.HOUR, tz)
        series = await reads.list_series(SeriesFilter())
        latest = await reads.latest(SeriesFilter())
        devices = await reads.list_devices()
        notice = ""
        try:
            counters = await counter_results(
                reads,
                series,
                {"hour": hours, "day": list(day)},
                until_ms=now + 1,
                policy=DEFAULT_POLICY,
                budget_rows=FIGURE_ROW_BUDGET,
            )
        except RowBudgetError:
            counters = []
            notice = "Too many readings today to compute consumption live; use the figures API."
        events = await reads.events(None, figures.TICKET_KIND, day[0], day[1], MAX_TICKETS)
        return Overview(
            now_ms=now,
            tz=tz,
            day=day,
            series=series,
            latest=latest,
            devices=devices,
            counters=counters,
            by_medium=group_results(counters, ("medium",)),
            by_process=group_results(counters, ("process", "medium")),
            materials=figures.materials_received(events, list(day)),
            tickets=sorted(events, key=lambda e: e.ts_ms, reverse=True)[:8],
            notice=notice,
        )

    async def trend(
        self, overview: Overview, wanted: str | None, range_name: str | None = None
    ) -> Trend:
        """The chosen series over the chosen range (`TREND_RANGES`, 24 h unless asked): for a
        counter its consumption per hour (per day for 7 days), else means with their minimum and
        maximum per bucket. A series whose data began inside the range is shown from where it
        began (at least `MIN_FITTED_BUCKETS` buckets), so fresh data is a visible line, not a
        few pixels at the right edge."""
        chosen = _pick_trend(overview, wanted)
        window = TREND_RANGES.get(range_name or "", TREND_RANGES[DEFAULT_RANGE])
        if chosen is None:
            return Trend(None, range=window)
        now = overview.now_ms
        reads = self.ctx.reads
        if figures.is_counter(chosen.metric, chosen.unit):
            return await self._counter_trend(overview, chosen, window)
        sid = chosen.series_id

        async def points_of(start: int, bucket: int) -> list[tuple[int, float, float, float]]:
            avg, low, high = [
                await reads.buckets(sid, start, now + 1, bucket, agg)
                for agg in (Agg.AVG, Agg.MIN, Agg.MAX)
            ]
            lows = {b.ts_ms: b.value for b in low}
            highs = {b.ts_ms: b.value for b in high}
            return [(b.ts_ms, b.value, lows[b.ts_ms], highs[b.ts_ms]) for b in avg]

        bucket = window.bucket_ms
        start = (now - window.span_ms) // bucket * bucket
        points = await points_of(start, bucket)
        if points and points[0][0] > start + bucket:
            # Data began inside the range: show it in the buckets of the shortest range that
            # holds it (13 minutes of data are 13 one-minute means, not 3 five-minute ones).
            age = now - points[0][0]
            finer = min(
                (r.bucket_ms for r in TREND_RANGES.values() if r.span_ms >= age),
                default=bucket,
            )
            if finer < bucket:
                bucket = finer
                points = await points_of(points[0][0] // bucket * bucket, bucket)
        fitted_start = start
        if points:
            fitted_start = max(start, min(points[0][0], now - MIN_FITTED_BUCKETS * bucket))
        return Trend(
            chosen,
            points=points,
            span=(fitted_start, now + 1),
            range=window,
            fitted=fitted_start > start,
            bucket_ms=bucket,
        )

    async def _counter_trend(
        self, overview: Overview, chosen: SeriesInfo, window: TrendRange
    ) -> Trend:
        now, tz = overview.now_ms, overview.tz
        daily = window.span_ms > 2 * 24 * HOUR_MS
        interval = Interval.DAY if daily else Interval.HOUR

        def grid(from_ms: int) -> list[int]:
            if daily:
                first = figures.local_day(from_ms, tz)[0]
                end = figures.local_day(now, tz)[1]
            else:
                first, end = from_ms // HOUR_MS * HOUR_MS, (now // HOUR_MS + 1) * HOUR_MS
            return figures.grid(first, end, interval, tz)

        async def compute(boundaries: list[int]) -> SeriesResult | None:
            found = await counter_results(
                self.ctx.reads,
                [chosen],
                {"bars": boundaries},
                until_ms=now + 1,
                policy=DEFAULT_POLICY,
            )
            return found[0] if found else None

        boundaries = grid(now - window.span_ms + 1)
        result = await compute(boundaries)
        fitted = False
        if result is not None and result.trace.ts and result.trace.ts[0] > boundaries[0]:
            # the data began inside the range: bars from the interval it began in
            later = grid(result.trace.ts[0])
            if later[0] > boundaries[0]:
                boundaries, fitted = later, True
                result = await compute(boundaries)
        span = (boundaries[0], now + 1)
        return Trend(chosen, counter=result, span=span, range=window, fitted=fitted)


def _pick_trend(overview: Overview, wanted: str | None) -> SeriesInfo | None:
    by_id = {s.series_id: s for s in overview.series}
    if wanted is not None and wanted.isdigit() and int(wanted) in by_id:
        return by_id[int(wanted)]
    for s in overview.series:
        if s.unit in POWER_UNITS and "total" in s.metric:
            return s
    power = [s for s in overview.series if s.unit in POWER_UNITS]
    if power:
        return power[0]
    return overview.series[0] if overview.series else None


async def _small_body(request: Request) -> str | None:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        return None


def routes(ctx: AppContext, config: DashboardConfig) -> list[Route]:
    d = Dashboard(ctx, config)
    e = ctx.endpoint
    return [
        Route("/", e("dashboard", d.page), methods=["GET"]),
        Route("/dashboard/fragment", e("dashboard_fragment", d.fragment), methods=["GET"]),
        Route("/fleet", e("fleet", d.fleet), methods=["GET"]),
        Route("/login", e("login", d.login), methods=["POST"]),
        Route("/logout", e("logout", d.logout), methods=["POST"]),
        Route("/static/{name}", e("static", d.asset), methods=["GET"]),
    ]
