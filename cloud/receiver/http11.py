"""The receiver's HTTP/1.1 connections: uvicorn's h11 protocol with a guard against hostile clients.

uvicorn alone lets a client hold a connection forever by sending part of a request head, checks
its 16 KiB head limit only when a head arrives in pieces, and counts *open connections* against
`limit_concurrency`, so a few hundred idle sockets turn every gateway away with a plain-text 503.
`guarded_protocol()` builds the protocol class `edge-cloud serve` hands to uvicorn (`http=`); it
changes only what happens around uvicorn's own request handling:

1. **Head deadline.** A request head must arrive whole within `head_timeout_s`, counted from the
   connection's start, or, on a kept-alive connection, from the first byte after the previous
   response (an idle kept-alive connection with no byte at all is uvicorn's keep-alive timer's,
   `keep_alive_s`). Late: a JSON 408 and close.
2. **Head size.** Whenever bytes of a head are buffered and there are more than `max_head_bytes`
   of them, the head must end within the first `max_head_bytes` (`head_fits`), in one write or
   in many: else a JSON 431 and close. uvicorn's own check (h11's `max_incomplete_event_size`)
   stays, with the same limit, for the pieces case.
3. **Waiting connections.** Every connection without a request being handled is in the
   `ConnectionTable` (see `cloud.receiver.connections` for its invariants): per address and in
   all, the oldest waiting connections are closed to make room, never one with a request.
4. **Overload.** The concurrency limit counts requests being handled (all, and per address),
   not open connections. Over it: the receiver's JSON 503 with `Retry-After`, and close.

The 408 and the 431 are written straight to the transport, not through h11, and the connection
is closed right after: they are final. Malformed requests (h11's RemoteProtocolError, which
uvicorn answers with a plain-text 400) get the receiver's JSON 400 the same way. The 503 is an
ordinary response that uvicorn sends in place of the app's, with `Connection: close`.

One reach past h11's public API: the length of its receive buffer (`_receive_buffer`), read
once or twice per request because h11 offers only a copy of the bytes (`trailing_data`).

Nothing here blocks or sleeps; timers are the event loop's (`call_later`), cancelled on every
path out of the state that armed them.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
import msgspec
from starlette.types import ASGIApp
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from cloud import responses
from cloud.config import ConnectionLimits
from cloud.receiver.connections import ConnectionTable, TableLimits, address_key, head_fits

RETRY_AFTER_S = 1


def _final(status: int, reason: str, body: object) -> bytes:
    """A whole response that ends the connection: status line, the receiver's headers, body."""
    content = msgspec.json.encode(body)
    headers = {
        **responses.BASE_HEADERS,
        "content-type": "application/json",
        "content-length": str(len(content)),
        "connection": "close",
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + content


HEAD_TIMEOUT_RESPONSE = _final(408, "Request Timeout", responses.HEAD_TIMEOUT)
MALFORMED_RESPONSE = _final(400, "Bad Request", responses.bad_request("malformed HTTP request"))


# uvicorn sends the receiver's own JSON 503 to a request over the limits; a Starlette Response is
# an ASGI app that can answer any number of requests.
OVERLOADED = responses.json_response(
    503, responses.UNAVAILABLE, {"retry-after": str(RETRY_AFTER_S), "connection": "close"}
)


class Guard:
    """What every connection of one server shares: its limits and its table."""

    def __init__(self, limits: ConnectionLimits, *, max_requests: int) -> None:
        self.limits = limits
        self.max_requests = max_requests
        self.table: ConnectionTable[GuardedH11Protocol] = ConnectionTable(
            TableLimits(limits.max_waiting_per_address, limits.max_waiting)
        )
        self.head_too_large = _final(
            431,
            "Request Header Fields Too Large",
            {
                "error": "too_large",
                "message": f"request head larger than {limits.max_head_bytes} bytes",
            },
        )

    def overloaded(self, address: str) -> bool:
        """Whether one more request from `address` would be over the limits."""
        return (
            self.table.handling >= self.max_requests
            or self.table.requests_from(address) >= self.limits.max_requests_per_address
        )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol, guarded; a subclass per server is made by `guarded_protocol`."""

    guard: ClassVar[Guard]

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._address = ""
        super().__init__(config, server_state, app_state, _loop)
        self._handling = False  # a request of ours is being handled (not in the table's queues)
        self._deadline: asyncio.TimerHandle | None = None

    # -- uvicorn's protocol interface, extended -------------------------------------------

    # uvicorn reads `self.app` once per request, when its head has been parsed and before the
    # request counts as handling here: that is where the overload check sits, at the cost of an
    # attribute lookup, and with no wrapper around the app.
    @property
    def app(self) -> ASGIApp:
        return OVERLOADED if self.guard.overloaded(self._address) else self._app

    @app.setter
    def app(self, app: ASGIApp) -> None:
        self._app = app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = address_key(self.client[0]) if self.client else ""
        self._close(self.guard.table.wait(self, self._address))
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.table.closed(self)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        if not self._handling and self.conn.their_state is h11.IDLE:
            limit = self.guard.limits.max_head_bytes
            # h11 keeps no public count of the bytes it buffers; `trailing_data` copies them,
            # so the copy is taken only once there are more than `limit` of them.
            if len(self.conn._receive_buffer) > limit and not head_fits(
                self.conn.trailing_data[0], limit
            ):
                self._end(self.guard.head_too_large)
                return
        super().handle_events()
        self._update()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update()

    def send_400_response(self, msg: str) -> None:
        self._end(MALFORMED_RESPONSE)

    # -- the guard -------------------------------------------------------------------------

    def _update(self) -> None:
        """Bring the table and the head deadline in line with uvicorn's state (called a few
        times per request: the common case, nothing changed, returns early)."""
        cycle = self.cycle
        handling = cycle is not None and not cycle.response_complete
        if handling == self._handling:
            if not handling and self._deadline is None and self._head_started():
                self._arm()
            return
        if self.transport.is_closing():
            return  # connection_lost will take it out of the table
        self._handling = handling
        if handling:
            self._disarm()
            self.guard.table.handle(self)
            return
        self._close(self.guard.table.wait(self, self._address))
        if self._head_started():
            self._arm()

    def _head_started(self) -> bool:
        # Bytes of the next request are here, or the previous request's body is still coming.
        return self.conn.their_state is not h11.IDLE or bool(self.conn._receive_buffer)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.guard.limits.head_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._handling:
            return
        if self.conn.our_state is h11.IDLE:
            self._end(HEAD_TIMEOUT_RESPONSE)
        else:
            self.transport.close()

    def _end(self, response: bytes) -> None:
        self._disarm()
        self.transport.write(response)
        self.transport.close()

    def _close(self, evicted: list[GuardedH11Protocol]) -> None:
        for other in evicted:
            other._disarm()
            other.transport.close()


def guarded_protocol(limits: ConnectionLimits, *, max_requests: int) -> type[GuardedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` with its own `Guard`: one per server."""

    class ReceiverH11Protocol(GuardedH11Protocol):
        guard = Guard(limits, max_requests=max_requests)

    return ReceiverH11Protocol
