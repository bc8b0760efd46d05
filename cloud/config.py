"""The receiver's settings: typed, frozen, validated once when built. Limits have units in names.

The defaults are the numbers docs/security.md explains; `edge-cloud serve` builds a `Config` from
flags and environment variables (`cloud.cli`), tests build one directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.bearer import BearerCheck
from cloud.errors import ConfigError

MiB = 1024 * 1024
_ORIGIN_PATH = re.compile(r"(/[A-Za-z0-9\-._~%/]*)?")


@dataclass(frozen=True, slots=True)
class Limits:
    max_wire_bytes: int = 2 * MiB  # docs/protocol.md section 3
    max_decoded_bytes: int = 8 * MiB
    max_json_bytes: int = 16 * 1024  # enrolment, rotation
    decode_concurrency: int = 4  # batches decompressed + decoded at once, per process
    decode_in_thread_bytes: int = 64 * 1024  # larger bodies decode off the event loop
    device_rate_per_s: float = 10.0  # batches per device: sustained ...
    device_burst: int = 60  # ... and burst (catch-up after an outage)
    enroll_rate_per_s: float = 5 / 60  # enrolment/rotation attempts per client address
    enroll_burst: int = 10
    body_timeout_s: float = 30.0  # reading one request body
    handler_timeout_s: float = 60.0  # everything a request does after its headers
    raw_readings_limit: int = 10_000  # rows per raw readings query
    key_cache_s: float = 1.0  # how long a key's state may be reused (revocation delay)
    unknown_key_cache_s: float = 5.0  # how long an unknown keyid is known to be unknown ...
    unknown_key_cache_max: int = 10_000  # ... and how many of them
    auth_failure_rate_per_s: float = 1.0  # failed device authentications per client address ...
    auth_failure_burst: int = 30  # ... before /v1/batches and /v1/chain/head answer 429
    rate_table_max: int = 100_000  # tracked devices/addresses before the oldest are forgotten

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise ConfigError([f"limit {name} must be positive"])
        if self.max_decoded_bytes < self.max_wire_bytes:
            raise ConfigError(["max_decoded_bytes must be at least max_wire_bytes"])


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one HTTP connection may cost before it has a request being handled
    (`cloud.receiver.http11`, docs/security.md "Connections")."""

    head_timeout_s: float = 5.0  # a request head arrives whole within this, or the socket closes
    # Longer than the agent's default batch interval (agent.config batch_interval_ms, 5 s) plus
    # an upload and some jitter, so a gateway's upload connection stays open between batches
    # instead of being closed and reopened every time (at 5 s the two raced).
    keep_alive_s: int = 20  # uvicorn takes whole seconds
    max_head_bytes: int = 16 * 1024  # request line and headers, however they arrive
    max_waiting_per_address: int = 64  # connections without a request being handled, per address
    max_waiting: int = 16_384  # the same, in all (lowered at start to fit the descriptor limit)
    max_requests_per_address: int = 50  # requests being handled at once, per address

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise ConfigError([f"connection limit {name} must be positive"])


@dataclass(frozen=True, slots=True)
class Config:
    """What `create_app` needs besides the store."""

    public_url: str  # the origin (and optional path prefix) gateways sign against
    admin: BearerCheck = field(default_factory=BearerCheck)
    read: BearerCheck = field(default_factory=BearerCheck)  # admin tokens are accepted too
    limits: Limits = field(default_factory=Limits)
    key_overlap_ms: int = 7 * 24 * 3600 * 1000  # old key valid after a rotation
    max_token_ttl_s: int = 30 * 24 * 3600
    max_enroll_failures: int = 5
    # Signs pushed configs; its public half is in every enrol answer. None: no remote config.
    config_key: Ed25519PrivateKey | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_url", normalise_public_url(self.public_url))


def normalise_public_url(url: str) -> str:
    """`https://host[:port][/prefix]` without a trailing slash; ConfigError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError([f"public URL {url!r}: expected http(s)://host[:port][/prefix]"])
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError([f"public URL {url!r}: no query, fragment or credentials allowed"])
    if _ORIGIN_PATH.fullmatch(parts.path) is None:
        raise ConfigError([f"public URL {url!r}: unexpected characters in the path"])
    return url.rstrip("/")
