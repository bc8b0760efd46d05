"""Who may hold a connection open: the per-address bookkeeping of the receiver's HTTP guard.

Sans-I/O, like h11: no sockets, no clock, no asyncio. `cloud.receiver.http11` feeds it what
happens to each connection and closes the connections it names; everything here is plain data.

A connection is in one of two states:

- **waiting**: no request of it is being handled. A fresh connection, one whose request head is
  still arriving, and an idle keep-alive connection are all waiting. Waiting costs the receiver a
  file descriptor and a little memory and gives a client nothing, so waiting is what is capped.
- **handling**: its request head has arrived and the application is working on the request. The
  number of requests being handled is capped elsewhere (the overload answer, a 503), and per
  address here (`requests_from`).

Invariants, kept by `ConnectionTable` after every call:

1. At most `max_waiting_per_address` connections wait per address key, and at most
   `max_waiting` in all. Admitting one more waiting connection evicts the oldest waiting one of
   the same address first, else the oldest waiting one overall; the caller closes what it is
   given. A handling connection is never evicted: a gateway that got its head through keeps its
   request.
2. Every connection is counted exactly once, in the state it was last put in, until `closed`;
   `closed` of an unknown or already closed connection is a no-op (a transport may report its
   loss after we closed it).
3. "Oldest" means longest waiting: a connection goes to the back of both queues each time it
   starts waiting again (after its response).

So one address cannot hold more than `max_waiting_per_address` descriptors idle, whatever it
does, and a client on another address always finds a waiting slot: its new connection is
admitted and it is someone else's oldest idle connection that goes.

Addresses are keyed by `address_key`: an IPv4 address as is, an IPv6 address by its /64 (one
host usually owns a whole /64, so per-address caps by full IPv6 address would cap nothing).

`head_fits` is the other half of the guard: whether a request head ends within the head limit,
whatever the size of the writes it came in.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# h11 ends a head at the first "\n\n" or "\n\r\n" (it accepts bare LF line ends).
_HEAD_ENDS = (b"\n\r\n", b"\n\n")


def head_fits(buffered: bytes, limit: int) -> bool:
    """True when `buffered` (bytes received while waiting for a request head) holds a head that
    ends within its first `limit` bytes, or is no longer than `limit` so far (more may come).

    False means the peer broke the limit: its head is already longer than `limit` bytes."""
    if len(buffered) <= limit:
        return True
    return any(buffered.find(end, 0, limit) != -1 for end in _HEAD_ENDS)


# Parsing an address costs microseconds and a receiver sees the same few addresses again and
# again (every request asks): remember the recent ones.
@functools.lru_cache(maxsize=4096)
def address_key(host: str) -> str:
    """The key a client address is counted under: IPv4 as is, IPv6 by its /64 prefix; anything
    that is not an IP address (a Unix socket's peer) as the string it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True, slots=True)
class TableLimits:
    max_waiting_per_address: int
    max_waiting: int

    def __post_init__(self) -> None:
        if self.max_waiting_per_address < 1 or self.max_waiting < 1:
            raise ValueError("connection caps must be at least 1")


class ConnectionTable(Generic[K]):
    """Waiting and handling connections by address key; see the module docstring."""

    def __init__(self, limits: TableLimits) -> None:
        self._limits = limits
        self._address: dict[K, str] = {}
        # Insertion order is waiting order: the first key is the longest waiting.
        self._waiting: dict[K, None] = {}
        self._waiting_by_address: dict[str, dict[K, None]] = {}
        self._handling_by_address: dict[str, int] = {}
        self._handling = 0

    def wait(self, conn: K, address: str) -> list[K]:
        """`conn` (new, or back from handling) is waiting; returns the connections to close."""
        self._forget(conn)
        self._address[conn] = address
        evicted: list[K] = []
        mine = self._waiting_by_address.setdefault(address, {})
        if len(mine) >= self._limits.max_waiting_per_address:
            evicted.append(next(iter(mine)))
        elif len(self._waiting) >= self._limits.max_waiting:
            evicted.append(next(iter(self._waiting)))
        for old in evicted:
            self.closed(old)
        self._waiting_by_address.setdefault(address, {})[conn] = None
        self._waiting[conn] = None
        return evicted

    def handle(self, conn: K) -> None:
        """`conn`'s request head has arrived: it is handling until `wait` or `closed`."""
        address = self._address.get(conn)
        if address is None or conn not in self._waiting:
            return
        self._forget(conn)
        self._address[conn] = address
        self._handling_by_address[address] = self._handling_by_address.get(address, 0) + 1
        self._handling += 1

    def closed(self, conn: K) -> None:
        self._forget(conn)

    def requests_from(self, address: str) -> int:
        """How many requests from `address` are being handled."""
        return self._handling_by_address.get(address, 0)

    def waiting_from(self, address: str) -> int:
        return len(self._waiting_by_address.get(address, ()))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def handling(self) -> int:
        """How many requests are being handled, from every address."""
        return self._handling

    def _forget(self, conn: K) -> None:
        address = self._address.pop(conn, None)
        if address is None:
            return
        if conn in self._waiting:
            del self._waiting[conn]
            mine = self._waiting_by_address[address]
            del mine[conn]
            if not mine:
                del self._waiting_by_address[address]
            return
        self._handling -= 1
        left = self._handling_by_address[address] - 1
        if left:
            self._handling_by_address[address] = left
        else:
            del self._handling_by_address[address]
