"""The batch interface: what the receiver's batch endpoint needs from storage, and its records.

Contract of `BatchStore.store_batch` (the one place exactly-once is decided):
- It runs ONE transaction that first locks the device's row (PostgreSQL `SELECT ... FOR UPDATE`,
  SQLite `BEGIN IMMEDIATE`), then re-checks that the signing key (`meta.keyid`) may still act
  for the device at `meta.received_ms` (`cloud.storage.devices.key_usable`: device active, key
  active or retiring before its end), read with the locked device row; PostgreSQL's
  revocations lock that row too, so a revocation waits for the batch or the batch sees it. A
  key revoked or a device disabled after the request was authenticated gives `KEY_REFUSED` and
  writes nothing; a key id the store does not hold at all is left to the batch row's foreign
  key (IntegrityError). Then it compares the batch with the device's chain head
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
from dataclasses import dataclass
from typing import Protocol

from cloud.storage.devices import ChainHead, KeyRecord
from wire.models import Batch


class Outcome(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    SEQ_GAP = "seq_gap"
    CHAIN_CONFLICT = "chain_conflict"
    KEY_REFUSED = "key_refused"  # revoked, expired or disabled since authentication: 403


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
class BatchResult:
    outcome: Outcome
    seq: int
    expected_seq: int
    reason: str = ""


class BatchStore(Protocol):
    """Key look-up, the batch transaction and the chain head: the receiver's hot path."""

    kind: str  # "sqlite" | "postgres"

    async def get_key(self, keyid: str) -> KeyRecord | None: ...

    async def store_batch(self, meta: BatchMeta, batch: Batch) -> BatchResult:
        """The batch transaction (see the module docstring)."""

    async def chain_head(self, device_id: str) -> ChainHead | None: ...
