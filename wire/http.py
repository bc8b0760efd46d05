"""The HTTP contract between gateways, edgectl and the receiver: paths, error codes, JSON bodies.

Pure: no I/O. The receiver encodes these structs; the agent (`agent.uplink`) and edgectl
(`provisioning.client`) decode them; `cloud.receiver.openapi` generates the OpenAPI document from
them. Bodies of the operator APIs live beside this module: `wire.admin` (admin API) and
`wire.query` (read API).

Invariants:
- Field order is wire order: msgspec encodes a struct's fields in declaration order, and the bytes
  are those docs/protocol.md and docs/api.md show. Reordering a field changes the bytes.
- Bodies the *receiver reads* (requests) keep the tolerance they have always had:
  `EnrollRequest` and `RotateRequest` ignore unknown fields (an older receiver must accept a newer
  gateway's extra field), `wire.admin.TokenRequest` rejects them (its only writer is edgectl).
  The receiver decodes every JSON request body through `wire.jsonbody.decode_json`: strict
  types, and no key repeated in any object at any depth, known field or not.
- Bodies the *clients read* (responses) ignore unknown fields, so a receiver may add a field
  without breaking deployed gateways; a missing or mistyped field the client needs is an error.
- `ErrorBody.error` is a plain string when decoded: a client must survive a code it does not know.
  The receiver writes only `ErrorCode` members.
- The agent's acknowledgement rule: only a 200 whose body decodes as `BatchAck` (status `stored`
  or `duplicate`) *and* names the batch's own seq deletes a batch (docs/protocol.md section 5).
"""

from __future__ import annotations

import enum
from urllib.parse import quote

import msgspec

JSON_MEDIA_TYPE = "application/json"

# Paths as OpenAPI templates; `{name}` is one path parameter. The receiver adds its router's
# converters (a device id may hold "/", so it matches the rest of the path).
BATCHES_PATH = "/v1/batches"
HEALTH_REPORT_PATH = "/v1/health"
CHAIN_HEAD_PATH = "/v1/chain/head"
ENROLL_PATH = "/v1/enroll"
ROTATE_PATH = "/v1/keys/rotate"
ADMIN_TOKENS_PATH = "/v1/admin/tokens"
ADMIN_DEVICES_PATH = "/v1/admin/devices"
ADMIN_DEVICE_PATH = "/v1/admin/devices/{device_id}"
ADMIN_DEVICE_ACTION_PATH = "/v1/admin/devices/{device_id}/{action}"  # disable, enable, revoke
ADMIN_KEY_REVOKE_PATH = "/v1/admin/keys/{keyid}/revoke"
DEVICES_PATH = "/v1/devices"
DEVICE_HEALTH_PATH = "/v1/devices/{device_id}/health"
DEVICE_BATCHES_PATH = "/v1/devices/{device_id}/batches"
SERIES_PATH = "/v1/series"
READINGS_PATH = "/v1/series/{series_id}/readings"
LATEST_PATH = "/v1/latest"
EVENTS_PATH = "/v1/events"
CONSUMPTION_PATH = "/v1/figures/consumption"
MATERIALS_PATH = "/v1/figures/materials"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
OPENAPI_PATH = "/v1/openapi.json"


def admin_device_path(device_id: str, action: str = "") -> str:
    """The admin path of one device, or of an action on it (`disable`, `enable`, `revoke`).

    A "/" in the device id stays literal: the receiver matches the rest of the path."""
    path = ADMIN_DEVICE_PATH.replace("{device_id}", quote(device_id, safe="/"))
    return f"{path}/{action}" if action else path


def device_health_path(device_id: str) -> str:
    """The read API's path of one device's health ("/" in the id stays literal)."""
    return DEVICE_HEALTH_PATH.replace("{device_id}", quote(device_id, safe="/"))


def device_batches_path(device_id: str) -> str:
    """The read API's path of one device's batch records ("/" in the id stays literal)."""
    return DEVICE_BATCHES_PATH.replace("{device_id}", quote(device_id, safe="/"))


def admin_key_revoke_path(keyid: str) -> str:
    return ADMIN_KEY_REVOKE_PATH.replace("{keyid}", quote(keyid, safe=""))


class ErrorCode(enum.StrEnum):
    """The `error` of every refusal the receiver sends; stable, documented in docs/api.md."""

    BAD_REQUEST = "bad_request"  # 400
    UNAUTHORIZED = "unauthorized"  # 401: signature, digest, key or bearer token
    ENROLLMENT_REFUSED = "enrollment_refused"  # 401: every enrolment refusal alike
    FORBIDDEN = "forbidden"  # 403
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    TIMEOUT = "timeout"  # 408: the request head did not arrive in time
    CONFLICT = "conflict"  # 409 on an admin call
    SEQ_GAP = "seq_gap"  # 409: earlier batches missing; resend from expected_seq
    CHAIN_CONFLICT = "chain_conflict"  # 409: a fork; an operator decides
    TOO_LARGE = "too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    RATE_LIMITED = "rate_limited"  # 429
    INTERNAL = "internal"  # 500
    UNAVAILABLE = "unavailable"  # 503


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Every non-2xx JSON answer. Optional fields are left out when unset, so the bytes are the
    short ones docs/protocol.md shows (`{"error":"too_large"}`). Tolerant of unknown fields."""

    error: str
    message: str | None = None  # ours (a fixed phrase or a validation path), never raw input
    expected_seq: int | None = None  # seq_gap, chain_conflict
    reason: str | None = None  # chain_conflict: digest_mismatch | prev_mismatch


class AckStatus(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"


class BatchAck(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `POST /v1/batches`: the batch `seq` is stored (now or before). Tolerant of unknown
    fields; `status` outside `AckStatus` does not decode, so it is not an acknowledgement."""

    status: AckStatus
    seq: int
    server_time_ms: int | None = None


class ChainHead(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `GET /v1/chain/head`: where the receiver's copy of the device's chain ends.
    `digest` is base64url. Tolerant of unknown fields."""

    device_id: str
    seq: int
    digest: str
    server_time_ms: int | None = None


class EnrollRequest(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/enroll`, signed by the new key; `public_key` is base64url of the raw 32 bytes.
    Tolerant of unknown fields (a newer gateway may send more)."""

    token: str
    device_id: str
    public_key: str


class Enrolled(msgspec.Struct, frozen=True, kw_only=True):
    """`201` to `POST /v1/enroll`. Tolerant of unknown fields."""

    device_id: str
    keyid: str
    head_seq: int = 0
    head_digest: str = ""
    server_time_ms: int | None = None
    # The cloud's config-signing public key (base64url, 32 raw bytes): the gateway pins it and
    # applies only configs it signed (`wire.remoteconfig`). "" from a receiver without one.
    config_key: str = ""


class RotateRequest(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/keys/rotate`, signed by the current key; `pop` is the new key's signature over
    `wire.enrollment.rotate_pop_message`. Tolerant of unknown fields."""

    new_public_key: str
    pop: str


class Rotated(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `POST /v1/keys/rotate`; the old key works until `old_not_after_ms`."""

    keyid: str
    old_keyid: str
    old_not_after_ms: int


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `/healthz` (`ok`) and `/readyz` (`ready`)."""

    status: str


class SourceHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One source of a gateway. `state` is `up` or `down`; a down source names since when
    (`down_since_ms`, the time of its `source_down` event), why (`reason`, one of the gap
    reasons of docs/agent.md) and the error text (`detail`). `parts_down` names the units of a bus
    that are down while the bus itself is up. `outages` counts `source_down` events since the
    agent started; `errors` are the source's own error counters (name -> count, non-zero only)."""

    name: str
    state: str  # "up" | "down"
    down_since_ms: int | None = None
    reason: str | None = None
    detail: str | None = None
    parts_down: list[str] = msgspec.field(default_factory=list)
    outages: int = 0
    errors: dict[str, int] = msgspec.field(default_factory=dict)


class Backlog(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway holds that the receiver has not acknowledged."""

    readings: int
    bytes: int
    oldest_age_s: float | None  # None: nothing held


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/health`, JSON, signed by the device key like a batch. Tolerant of unknown
    fields (an older receiver must accept a newer gateway's extra field).

    `config_version` is the SHA-256 (hex, first 16 digits) of the agent's config file as read at
    start. `drops` are the totals since the buffer file was made, by reason (`buffer_full`,
    `damaged`, `rejected_invalid`). `clock_state` is `wire.models.ClockState` (0 synced,
    1 corrected, 2 untrusted). `restarts` counts the agent's starts on this buffer file after the
    first. `uplink` is the batch uplink's state (`idle`, `retrying`, `refused`, ...)."""

    device_id: str
    reported_ms: int
    agent_version: str
    config_version: str
    started_ms: int
    uptime_s: float
    restarts: int
    backlog: Backlog
    drops: dict[str, int]
    clock_state: int
    clock_offset_ms: int | None = None
    uplink: str = ""
    last_ack_ms: int | None = None
    sources: list[SourceHealth] = msgspec.field(default_factory=list)
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    # The last remote config apply (`agent.applier`): "applied", "refused: <reason>" or
    # "rolled back: <reason>"; None before the first. Added within protocol version 1.
    config_result: str | None = None


class HealthAck(msgspec.Struct, frozen=True, kw_only=True):
    """`200` to `POST /v1/health`: the report is stored. Tolerant of unknown fields."""

    status: str  # "stored"
    server_time_ms: int | None = None
    # The newest config version pushed to this gateway (`wire.remoteconfig`), None when none
    # was: a gateway running an older one fetches it (`GET /v1/config`).
    desired_config_version: int | None = None


class DeviceHealth(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/devices/{device_id}/health` (with `history`, newest first) and the `health`
    member of a device record (without). `received_ms` is the receiver's clock."""

    device_id: str
    received_ms: int
    report: HealthReport
    history: list[HealthReport] | msgspec.UnsetType = msgspec.UNSET
