"""Whether a host name or address stays on this machine.

Used where plain HTTP or an unauthenticated endpoint is allowed only locally: the agent's
`cloud.url` and `metrics.listen`, edgectl's receiver URL, and the receiver's own listen address.
The answer comes from the text alone, never from DNS: a resolver can be told to map any name to
127.0.0.1, and only `localhost` is trusted to mean this machine (RFC 6761 §6.3).
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for `localhost` (any case) and any loopback address: 127.0.0.0/8, ::1, and
    ::ffff:127.x.y.z (which Python 3.11's `is_loopback` misses). False for every other name,
    without asking DNS. `host` is bare, as `urlsplit().hostname` gives it (no brackets)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
