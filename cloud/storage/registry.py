"""The registry interface: enrolment tokens, devices, keys, rotation and revocation.

Used by the receiver's enrolment, rotation and admin endpoints, never by the apps. Every method
translates driver errors into `cloud.errors.StoreError` subclasses; times are integer UTC epoch
milliseconds passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cloud.storage.devices import ChainHead, DeviceState, DeviceStatus


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


class RegistryStore(Protocol):
    """Who may send: tokens, devices and their keys. Listing devices is a read
    (`cloud.storage.reads.ReadStore.list_devices`)."""

    kind: str

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

    async def get_device(self, device_id: str) -> DeviceState | None:
        """The device with its keys and its most recent chain events."""

    async def set_device_status(self, device_id: str, status: DeviceStatus) -> bool: ...

    async def revoke_key(self, keyid: str, now_ms: int) -> bool: ...

    async def revoke_device_keys(self, device_id: str, now_ms: int) -> int: ...
