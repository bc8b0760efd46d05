"""The ASGI application: `create_app(config, store)` wires handlers, limits and metrics.

The receiver's handlers share its `Context` (the whole store, limiters, key cache, metrics); the
apps get an `AppContext` with the store typed as `ReadStore` and the receiver's request wrapper.

The app does not open or close the store and reads no environment: the entry point
(`cloud.server`) builds the real store, clock and config and passes them in, so tests can run
the same app in-process over any store.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.apps import (
    alerts_api,
    dashboard,
    efficiency_api,
    efficiency_page,
    production_api,
    provenance,
    query,
)
from cloud.apps.context import AppContext
from cloud.apps.intensity import PlantConfig
from cloud.config import Config
from cloud.errors import StoreError
from cloud.receiver import admin, batches, configpush, enroll, health, openapi
from cloud.receiver.context import Context, wall_clock_ms
from cloud.receiver.metrics import Metrics
from cloud.storage.store import Store
from wire.http import HEALTH_PATH, OPENAPI_PATH, READY_PATH, Health


def create_app(
    config: Config,
    store: Store,
    *,
    now_ms: Callable[[], int] = wall_clock_ms,
    monotonic: Callable[[], float] = time.monotonic,
    dashboard_config: dashboard.DashboardConfig | None = None,
    plant: PlantConfig | None = None,
    worker: str = "",
) -> Starlette:
    ctx = Context(config, store, now_ms=now_ms, monotonic=monotonic, metrics=Metrics(worker=worker))
    apps = AppContext(
        reads=store,
        endpoint=ctx.endpoint,
        public_url=config.public_url,
        read=config.read,
        api=config.read.merged(config.admin),
        raw_readings_limit=config.limits.raw_readings_limit,
        now_ms=now_ms,
        audit=ctx.audit.action,
        monotonic=monotonic,
        plant=plant or PlantConfig(()),
    )
    spec = responses.json_response(200, openapi.document(config.public_url))

    async def healthz(request: Request) -> Response:
        return responses.json_response(200, Health(status="ok"))

    async def readyz(request: Request) -> Response:
        try:
            await store.ping()
        except StoreError:
            return responses.json_response(503, responses.UNAVAILABLE, {"retry-after": "5"})
        return responses.json_response(200, Health(status="ready"))

    async def metrics(request: Request) -> Response:
        return Response(
            ctx.metrics.render(),
            headers={"cache-control": "no-store"},
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    async def openapi_json(request: Request) -> Response:
        return spec

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        body = {404: responses.NOT_FOUND, 405: responses.METHOD_NOT_ALLOWED}.get(
            status, responses.INTERNAL
        )
        return responses.json_response(status, body)

    routes = [
        *batches.routes(ctx),
        *health.routes(ctx),
        *enroll.routes(ctx),
        *admin.routes(ctx),
        *configpush.routes(ctx),
        *query.routes(apps),
        *provenance.routes(apps),
        *efficiency_api.routes(apps),
        *production_api.routes(apps, store, config.admin),
        *alerts_api.routes(apps, store, config.admin),
        *dashboard.routes(apps, dashboard_config or dashboard.DashboardConfig()),
        *efficiency_page.routes(apps, store, dashboard_config or dashboard.DashboardConfig()),
        Route(HEALTH_PATH, healthz, methods=["GET"]),
        Route(READY_PATH, readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(OPENAPI_PATH, openapi_json, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    # No redirects between `/path` and `/path/`: an API answers 404, and Starlette's redirect
    # decodes the query string as UTF-8 without a check (a 500 on `?\x80`).
    app.router.redirect_slashes = False
    app.state.ctx = ctx
    return app
