"""Bodies of the operator API under `/v1/admin/` (docs/api.md), and the device record that the
read API (`GET /v1/devices`) shares. Pure: no I/O.

The receiver writes these; edgectl decodes them. Every response struct is tolerant of unknown
fields (a newer receiver may add some); `TokenRequest`, written only by edgectl, rejects them.
Field order is wire order.
"""

from __future__ import annotations

import msgspec

from wire.http import DeviceHealth

DEFAULT_TOKEN_TTL_S = 24 * 3600


class TokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/admin/tokens`: an enrolment token for `device_id`, valid `ttl_s` seconds."""

    device_id: str
    ttl_s: int = DEFAULT_TOKEN_TTL_S


class TokenIssued(msgspec.Struct, frozen=True, kw_only=True):
    """`201` to `POST /v1/admin/tokens`. The only time the token is shown."""

    token: str
    device_id: str
    expires_ms: int


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    """One key of a device; `status` is active, retiring or revoked; `public_key` base64url."""

    keyid: str
    status: str
    public_key: str
    created_ms: int
    not_after_ms: int | None
    revoked_ms: int | None


class ChainEventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A gap or fork the receiver saw in the device's chain."""

    kind: str  # "gap" | "fork"
    seq: int
    expected_seq: int
    reason: str
    at_ms: int


class DeviceDrops(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway's own loss counters, added up."""

    buffer_full: int
    damaged: int
    rejected_invalid: int


class DeviceClock(msgspec.Struct, frozen=True, kw_only=True):
    """`state`: 0 synced, 1 corrected, 2 untrusted (None before the first batch)."""

    state: int | None
    offset_ms: int | None
    created_skew_ms: int | None


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A device with its sync state. `keys` and `chain_events` are present only in the one-device
    answer (`GET /v1/admin/devices/{device_id}`); absent, they are `UNSET` and not encoded."""

    device_id: str
    status: str  # pending | active | disabled | revoked (active, every key revoked)
    head_seq: int
    head_digest: str
    created_ms: int
    last_seen_ms: int | None
    last_boot_id: str | None
    batches: int
    readings: int
    dropped: DeviceDrops
    clock: DeviceClock
    gaps: int
    forks: int
    keys: list[KeyView] | msgspec.UnsetType = msgspec.UNSET
    chain_events: list[ChainEventRecord] | msgspec.UnsetType = msgspec.UNSET
    # The gateway's latest health report (without history); absent until it sent one.
    health: DeviceHealth | msgspec.UnsetType = msgspec.UNSET


class DeviceList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/admin/devices` and `GET /v1/devices`."""

    devices: list[DeviceRecord]


class DeviceStatusChanged(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `POST /v1/admin/devices/{device_id}/disable|enable`."""

    device_id: str
    status: str


class DeviceKeysRevoked(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `POST /v1/admin/devices/{device_id}/revoke`: how many keys were revoked."""

    device_id: str
    revoked: int


class KeyRevoked(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `POST /v1/admin/keys/{keyid}/revoke`."""

    keyid: str
    device_id: str
    status: str
