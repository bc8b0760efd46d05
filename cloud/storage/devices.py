"""Device and key records: what every tier may know about a device.

The batch path looks a key up (`KeyRecord`) and answers with the chain head (`ChainHead`); the
registry changes devices and keys; the apps list devices with their sync state (`DeviceState`).
These records sit apart from the three interfaces (`cloud.storage.batches`,
`cloud.storage.registry`, `cloud.storage.reads`) so that an app can read a device without
importing an interface that writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DeviceStatus(enum.StrEnum):
    PENDING = "pending"  # a token was issued, no key enrolled yet
    ACTIVE = "active"
    DISABLED = "disabled"  # by an operator: valid signatures get 403
    # Read only, never stored: an active device whose every key is revoked (`devices revoke`),
    # so that every read of a device (list, show, dashboard) says what its uploads get: 403
    # until it re-enrols. Derived in `queries.DEVICE_COLUMNS`; re-enrolment makes it active.
    REVOKED = "revoked"


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    RETIRING = "retiring"  # replaced by rotation; valid until not_after_ms
    REVOKED = "revoked"


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
        return key_usable(self.device_status, self.status, self.not_after_ms, now_ms)


def key_usable(
    device_status: DeviceStatus, key_status: KeyStatus, not_after_ms: int | None, now_ms: int
) -> bool:
    """The one rule for a key acting for its device: the device is active, and the key is
    active or retiring before its end. The receiver applies it after the signature, and the
    batch transaction again under the device's row lock."""
    if device_status is not DeviceStatus.ACTIVE:
        return False
    if key_status is KeyStatus.ACTIVE:
        return True
    return key_status is KeyStatus.RETIRING and not_after_ms is not None and now_ms < not_after_ms


@dataclass(frozen=True, slots=True)
class ChainHead:
    device_id: str
    seq: int
    digest: bytes


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
