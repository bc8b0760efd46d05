"""What the platform's apps are given: a store that only reads, token checks, clocks, and the
wrapper every route goes through.

The app factory (`cloud.app.create_app`) builds one `AppContext` beside the receiver's own
context; the apps never see the receiver's (its store writes, its limiters and key cache are
the receiver's business). `endpoint` is the receiver's request wrapper, passed in as a plain
function: it turns refusals into responses, bounds each request's time and counts it in the
metrics, so an app route behaves like every other route without importing the receiver.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from cloud.apps.intensity import PlantConfig
from cloud.bearer import BearerCheck
from cloud.storage.reads import ReadStore

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class AppContext:
    reads: ReadStore
    endpoint: Callable[[str, Handler], Handler]  # route name, handler -> the wrapped handler
    public_url: str
    read: BearerCheck  # the read token
    api: BearerCheck  # what the read API accepts: the read token or the admin token
    raw_readings_limit: int  # rows per raw readings or events query
    now_ms: Callable[[], int]
    # the receiver's audit log (`cloud.receiver.audit.Audit.action`): request, what, ids
    audit: Callable[..., None]
    monotonic: Callable[[], float] = time.monotonic
    # processes, shifts and time zone of the efficiency figures (cloud.apps.plantfile)
    plant: PlantConfig = field(default_factory=lambda: PlantConfig(()))
