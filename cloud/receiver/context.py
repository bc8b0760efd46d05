"""What the receiver's handlers share: config, store, metrics, limiters and clocks, built by
`create_app`. The apps get `cloud.apps.context.AppContext` instead, with this context's `endpoint`.

The one wrapper `endpoint()` turns refusals and failures into protocol responses, counts every
request (and writes refusals to the audit log, `cloud.receiver.audit`), and bounds each handler's
time, for the receiver's routes and the apps' alike. It is the
only place where exceptions become responses, so no exception text can reach a client by another
path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from cloud import responses
from cloud.config import Config
from cloud.errors import RejectedError, StoreUnavailableError
from cloud.receiver.audit import Audit
from cloud.receiver.auth import KeyRecords, PublicKeys
from cloud.receiver.limits import RateLimiter
from cloud.receiver.metrics import Metrics
from cloud.storage.store import Store

log = logging.getLogger("cloud.app")
Handler = Callable[[Request], Awaitable[Response]]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Context:
    config: Config
    store: Store
    now_ms: Callable[[], int] = wall_clock_ms
    monotonic: Callable[[], float] = time.monotonic
    metrics: Metrics = field(default_factory=Metrics)
    keys: PublicKeys = field(default_factory=PublicKeys)
    device_limiter: RateLimiter = field(init=False)
    address_limiter: RateLimiter = field(init=False)
    auth_failures: RateLimiter = field(init=False)  # per client address, device requests
    decode_slots: asyncio.Semaphore = field(init=False)
    key_records: KeyRecords = field(init=False)
    audit: Audit = field(init=False)

    def __post_init__(self) -> None:
        lim = self.config.limits
        self.device_limiter = RateLimiter(
            lim.device_rate_per_s,
            lim.device_burst,
            clock=self.monotonic,
            max_keys=lim.rate_table_max,
        )
        self.address_limiter = RateLimiter(
            lim.enroll_rate_per_s,
            lim.enroll_burst,
            clock=self.monotonic,
            max_keys=lim.rate_table_max,
        )
        self.auth_failures = RateLimiter(
            lim.auth_failure_rate_per_s,
            lim.auth_failure_burst,
            clock=self.monotonic,
            max_keys=lim.rate_table_max,
        )
        self.decode_slots = asyncio.Semaphore(lim.decode_concurrency)
        self.key_records = KeyRecords(
            self.store,
            lim.key_cache_s,
            self.monotonic,
            unknown_ttl_s=lim.unknown_key_cache_s,
            unknown_max=lim.unknown_key_cache_max,
        )
        self.audit = Audit(self.monotonic)

    def endpoint(self, route: str, handler: Handler) -> Handler:
        """`handler` with refusals mapped to responses, a time bound, and request metrics."""

        async def run(request: Request) -> Response:
            try:
                async with asyncio.timeout(self.config.limits.handler_timeout_s):
                    response = await handler(request)
            except RejectedError as exc:
                self.metrics.rejections.inc(exc.body.error)
                log.debug("%s %s refused %d: %s", request.method, route, exc.status, exc.reason)
                self.audit.refused(request, route, exc.status, str(exc.body.error))
                response = responses.json_response(exc.status, exc.body, exc.headers)
            except (StoreUnavailableError, TimeoutError) as exc:
                self.metrics.rejections.inc(responses.UNAVAILABLE.error)
                log.warning("%s %s unavailable: %s", request.method, route, exc)
                response = responses.json_response(503, responses.UNAVAILABLE, {"retry-after": "1"})
            except Exception:
                self.metrics.rejections.inc(responses.INTERNAL.error)
                log.exception("%s %s failed", request.method, route)
                response = responses.json_response(500, responses.INTERNAL)
            self.metrics.requests.inc(route, str(response.status_code))
            return response

        return run
