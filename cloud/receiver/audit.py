"""The receiver's audit log: one line per operator action, and refused requests by class.

Lines go to the `cloud.audit` logger, which logs at INFO whatever the receiver's log level (an
audit trail is not debugging output), in the process's one log format (`hostio.logformat`):

    audit: token create device='gw-7' token_id=3f2a… expires_ms=… from 10.0.0.5
    audit: device disable device='gw-7' from 10.0.0.5
    audit: refused 401 unauthorized on batches from 203.0.113.9 (17 more since the last line)

Refusals are counted per class (route and error code: fixed sets, never request input) and
written at most once per `interval_s` per class with the number left out since the class's last
line, so a flood costs a line a minute, not a line a request; `tierless_rejections_total` counts
every one. No token, signature or body ever reaches a line: only ids the receiver checked or
issued, and the client's address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

AUDIT_LOGGER = "cloud.audit"
REFUSAL_INTERVAL_S = 60.0


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


@dataclass(slots=True)
class _Class:
    last_s: float
    left_out: int = 0


class Audit:
    def __init__(
        self,
        monotonic: Callable[[], float],
        *,
        interval_s: float = REFUSAL_INTERVAL_S,
        logger: logging.Logger | None = None,
    ) -> None:
        self._monotonic = monotonic
        self._interval_s = interval_s
        self._log = logger or logging.getLogger(AUDIT_LOGGER)
        if logger is None:
            self._log.setLevel(logging.INFO)
        self._refused: dict[tuple[str, str, int], _Class] = {}

    def action(self, request: Request, what: str, **fields: object) -> None:
        """An operator's action that succeeded: `what` ("token create"), the ids it touched."""
        detail = " ".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in fields.items()
        )
        self._log.info("audit: %s %s from %s", what, detail, _client(request))

    def refused(self, request: Request, route: str, status: int, code: str) -> None:
        """A refused request; written at most once per interval per (route, code, status)."""
        key = (route, code, status)
        now = self._monotonic()
        seen = self._refused.get(key)
        if seen is not None and now - seen.last_s < self._interval_s:
            seen.left_out += 1
            return
        left_out = seen.left_out if seen is not None else 0
        self._refused[key] = _Class(now)
        more = f" ({left_out} more since the last line)" if left_out else ""
        self._log.info(
            "audit: refused %d %s on %s from %s%s", status, code, route, _client(request), more
        )
