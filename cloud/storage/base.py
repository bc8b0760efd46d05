"""The storage interface every backend implements, and the records it speaks in.

Contract of `Store.ingest` (the one place exactly-once is decided):
- It runs ONE transaction that first locks the device's row (PostgreSQL `SELECT ... FOR UPDATE`,
  SQLite `BEGIN IMMEDIATE`), then compares the batch with the device's chain head
  (`cloud.storage.chain.classify`), and only for an append writes the batch row, new series, all
  readings and events, the counters, and the new head. Either all of it commits or none of it.
- A duplicate (same seq, same digest) writes nothing. A gap or a fork writes only one
  `chain_event` row (once per distinct seq/digest) and bumps the device's gap/fork count.
- Concurrent callers for one device serialise on the row lock, in this process or in another
  receiver on the same database, so retries racing each other store a batch once.

Every method translates driver errors into `cloud.errors.StoreError` subclasses. Times are integer
UTC epoch milliseconds passed in by the caller: stores read no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from wire.models import Batch


class DeviceStatus(enum.StrEnum):
    PENDING = "pending"  # a token was issued, no key enrolled yet
    ACTIVE = "active"
    DISABLED = "disabled"  # by an operator: valid signatures get 403


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    RETIRING = "retiring"  # replaced by rotation; valid until not_after_ms
    REVOKED = "revoked"


class Outcome(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    SEQ_GAP = "seq_gap"
    CHAIN_CONFLICT = "chain_conflict"


class Agg(enum.StrEnum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    SUM = "sum"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    keyid: str
    device_id: str
    public_key: bytes
    status: KeyStatus
    not_after_ms: int | None
    created_ms: int
    revoked_ms: int | None
    device_status: DeviceStatus

    def usable(self, now_ms: int) -> bool:
        """Whether a valid signature by this key may act for its device now."""
        if self.device_status is not DeviceStatus.ACTIVE:
            return False
        if self.status is KeyStatus.ACTIVE:
            return True
        return (
            self.status is KeyStatus.RETIRING
            and self.not_after_ms is not None
            and now_ms < self.not_after_ms
        )


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """What the receiver learned about a batch from the request, stored with the batch row."""

    device_id: str
    seq: int
    digest: bytes
    prev: bytes
    keyid: str
    sig_created: int
    received_ms: int
    content_encoding: str | None
    wire_bytes: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: Outcome
    seq: int
    expected_seq: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ChainHead:
    device_id: str
    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    token_hash: bytes
    device_id: str
    created_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    token_id: str
    token_hash: bytes
    device_id: str
    keyid: str
    public_key: bytes
    now_ms: int


@dataclass(frozen=True, slots=True)
class RotateResult:
    keyid: str
    old_keyid: str
    old_not_after_ms: int


@dataclass(frozen=True, slots=True)
class ChainEvent:
    kind: str  # "gap" | "fork"
    seq: int
    expected_seq: int
    reason: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class DeviceState:
    device_id: str
    status: DeviceStatus
    head_seq: int
    head_digest: bytes
    created_ms: int
    last_seen_ms: int | None
    last_boot_id: str | None
    batches: int
    readings: int
    dropped_buffer_full: int
    dropped_damaged: int
    rejected_invalid: int
    clock_state: int | None
    clock_offset_ms: int | None
    created_skew_ms: int | None
    gaps: int
    forks: int
    keys: tuple[KeyRecord, ...] = ()
    chain_events: tuple[ChainEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesFilter:
    device: str | None = None
    metric: str | None = None
    site: str | None = None
    area: str | None = None
    process: str | None = None
    medium: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """(column, value) for each filter that is set; column names are fixed, never input."""
        pairs = (
            ("device_id", self.device),
            ("metric", self.metric),
            ("site", self.site),
            ("area", self.area),
            ("process", self.process),
            ("medium", self.medium),
        )
        return [(c, v) for c, v in pairs if v is not None]


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    series_id: int
    device_id: str
    metric: str
    unit: str
    site: str
    area: str
    process: str
    medium: str


@dataclass(frozen=True, slots=True)
class Point:
    ts_ms: int
    value: float
    quality: int


@dataclass(frozen=True, slots=True)
class BucketPoint:
    ts_ms: int  # bucket start
    value: float
    count: int


@dataclass(frozen=True, slots=True)
class LatestValue:
    series: SeriesInfo
    ts_ms: int
    value: float
    quality: int


@dataclass(frozen=True, slots=True)
class EventRecord:
    device_id: str
    seq: int
    kind: str
    ts_ms: int
    quality: int
    attrs: dict[str, str | int | float | bool] = field(default_factory=dict)


class Store(Protocol):
    """A receiver's state. Implementations: `cloud.storage.sqlite`, `cloud.storage.postgres`."""

    kind: str  # "sqlite" | "postgres"

    async def open(self) -> None:
        """Connect. StoreUnavailableError if the store cannot be reached."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless a trivial query answers."""

    async def empty(self) -> bool:
        """True when the store holds no tables at all: a brand-new database or schema."""

    async def schema_version(self) -> int:
        """The applied schema version; 0 for an empty store."""

    async def migrate(self) -> list[int]:
        """Apply every pending migration in order, each in its own transaction; the versions."""

    async def get_key(self, keyid: str) -> KeyRecord | None: ...

    async def ingest(self, meta: BatchMeta, batch: Batch) -> IngestResult: ...

    async def chain_head(self, device_id: str) -> ChainHead | None: ...

    async def create_token(self, token: TokenRecord) -> None:
        """Store a token (its hash only); creates the device as pending if it is new."""

    async def enroll(self, request: EnrollRequest, *, max_failures: int) -> ChainHead | None:
        """Consume the token and add the key, atomically; None for every kind of refusal."""

    async def rotate_key(
        self,
        device_id: str,
        old_keyid: str,
        new_keyid: str,
        new_public_key: bytes,
        *,
        now_ms: int,
        overlap_ms: int,
    ) -> RotateResult | None:
        """Add the new key, retire the old one; idempotent for the same new key; None if refused."""

    async def list_devices(self) -> list[DeviceState]: ...

    async def get_device(self, device_id: str) -> DeviceState | None:
        """The device with its keys and its most recent chain events."""

    async def set_device_status(self, device_id: str, status: DeviceStatus) -> bool: ...

    async def revoke_key(self, keyid: str, now_ms: int) -> bool: ...

    async def revoke_device_keys(self, device_id: str, now_ms: int) -> int: ...

    async def list_series(self, flt: SeriesFilter) -> list[SeriesInfo]: ...

    async def get_series(self, series_id: int) -> SeriesInfo | None: ...

    async def readings(self, series_id: int, from_ms: int, to_ms: int, limit: int) -> list[Point]:
        """Raw readings with from_ms <= ts < to_ms, oldest first, at most `limit`."""

    async def buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        """One aggregate per non-empty bucket of `bucket_ms`, aligned to the epoch."""

    async def latest(self, flt: SeriesFilter) -> list[LatestValue]: ...

    async def events(
        self, device_id: str | None, kind: str | None, from_ms: int, to_ms: int, limit: int
    ) -> list[EventRecord]: ...

    async def bulk_insert_readings(self, rows: Sequence[tuple[int, int, float, int]]) -> None:
        """Append raw reading rows in one transaction: the storage limit the bench compares with."""


@runtime_checkable
class RowReader(Protocol):
    """A store that runs one read-only statement and returns all its rows: the seam through which
    `cloud.storage.figures` reads (its SQL is written per backend, chosen by `kind`). Driver
    errors come out as `cloud.errors.StoreError`, as from every Store method."""

    kind: str

    async def fetch_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...
