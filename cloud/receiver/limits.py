"""Resource limits on the request path: per-key rate buckets and the capped body reader.

The buckets: per device (batches, after authentication), per client address (enrolment and
rotation attempts, before any work), and per client address for failed device authentications
(`/v1/batches` and `/v1/chain/head` answer 429 before authenticating once an address has used
its failures up; a gateway that authenticates is never charged, so gateways sharing one address
behind NAT are not limited by each other's traffic, only by failures from that address).

Invariants:
- A body is never read past `cap` bytes: a declared Content-Length over the cap is refused before
  the first byte is read, and a chunked (or lying) body is cut off as soon as it passes the cap.
- Rate buckets live in this process (one receiver). Behind a load balancer each replica limits on
  its own, so the effective limit is replicas x rate; docs/security.md says so.
- The bucket table is bounded: past `max_keys` the least recently refilled keys are forgotten
  (a forgotten key starts with a full bucket, which only ever errs towards admitting).
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request

from cloud import responses
from cloud.errors import RejectedError


class RateLimiter:
    """Token buckets keyed by device id or client address; `clock` is monotonic seconds."""

    def __init__(
        self, rate_per_s: float, burst: int, *, clock: Callable[[], float], max_keys: int
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _refill(self, key: str, now: float) -> float:
        tokens, last = self._buckets.pop(key, (self._burst, now))
        return min(self._burst, tokens + (now - last) * self._rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def _wait(self, tokens: float) -> int:
        return 0 if tokens >= 1.0 else max(1, math.ceil((1.0 - tokens) / self._rate))

    def retry_after_s(self, key: str) -> int:
        """Take one token for `key`: 0 when allowed, else whole seconds until one is due."""
        now = self._clock()
        tokens = self._refill(key, now)
        wait = self._wait(tokens)
        self._store(key, tokens - 1.0 if wait == 0 else tokens, now)
        return wait

    def wait_s(self, key: str) -> int:
        """Whole seconds until `key` has a token, 0 if it has one now; takes nothing."""
        if key not in self._buckets:  # a full bucket: no entry needed (gateways never get one)
            return 0
        now = self._clock()
        tokens = self._refill(key, now)
        self._store(key, tokens, now)
        return self._wait(tokens)

    def charge(self, key: str) -> None:
        """Take one token from `key` if it has one (a cost counted after the fact)."""
        now = self._clock()
        tokens = self._refill(key, now)
        self._store(key, max(0.0, tokens - 1.0), now)

    def check_open(self, key: str, *, reason: str) -> None:
        """RejectedError 429 with Retry-After when `key` has no token left; takes nothing."""
        wait = self.wait_s(key)
        if wait:
            raise _rate_limited(reason, wait)

    def check(self, key: str, *, reason: str) -> None:
        """RejectedError 429 with Retry-After when `key` is over its rate."""
        wait = self.retry_after_s(key)
        if wait:
            raise _rate_limited(reason, wait)


def _rate_limited(reason: str, wait_s: int) -> RejectedError:
    return RejectedError(
        429, responses.RATE_LIMITED, reason=reason, headers={"retry-after": str(wait_s)}
    )


def too_large(reason: str) -> RejectedError:
    return RejectedError(413, responses.TOO_LARGE, reason=reason)


def check_declared_size(request: Request, cap: int) -> None:
    """Refuse a declared Content-Length over `cap` before reading anything."""
    declared = request.headers.getlist("content-length")
    if not declared:
        return
    if len(declared) != 1 or not declared[0].isdigit():
        raise RejectedError(400, responses.bad_request("bad Content-Length"), reason="length")
    if int(declared[0]) > cap:
        raise too_large(f"content-length {declared[0]} over {cap}")


async def read_body(request: Request, cap: int, *, timeout_s: float) -> bytes:
    """The whole body, at most `cap` bytes, within `timeout_s`; RejectedError otherwise."""
    check_declared_size(request, cap)
    # ASGI messages straight from `receive`, not through `request.stream()`: a small batch is
    # one message, and skipping the async generator saves ~3 us of the ~13 this function took.
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect
                if message["type"] != "http.request":  # pragma: no cover - not in ASGI http
                    continue
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > cap:
                    raise too_large(f"streamed body over {cap}")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError as exc:
        raise RejectedError(
            503, responses.UNAVAILABLE, reason="body timeout", headers={"retry-after": "1"}
        ) from exc
    except ClientDisconnect as exc:
        raise RejectedError(
            400, responses.bad_request("incomplete body"), reason="disconnect"
        ) from exc
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
