"""The config interface: configs pushed to gateways, versioned per device, and their audit.

Written only by the receiver's admin push (`ConfigStore.push_config`), read by the admin status
and by the gateway's fetch. A pushed config is kept whole: body, its SHA-256 and the cloud's
signature over (device, version, sha256, body) (`wire.remoteconfig`), so what a gateway fetches
is byte for byte what was checked and signed at push time.

Invariants:
- versions of one device are 1, 2, 3, ... in push order: `push_config` takes the next number of
  every target device and writes all of them and one audit row in one transaction (the device
  rows are locked on PostgreSQL, so concurrent pushes serialise per device);
- nothing is updated or deleted: the newest version of a device is its desired config, and the
  history is the audit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

TAG_COLUMNS = ("site", "area", "process", "medium")  # what `--tag k=v` may select on


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    device_id: str
    version: int
    sha256: str
    body: bytes
    signature: str
    pushed_ms: int
    pushed_by: str


@dataclass(frozen=True, slots=True)
class ConfigAudit:
    at_ms: int
    actor: str
    target: str  # "device gw-1" or "tag site=plant-1"
    sha256: str
    devices: int


Signer = Callable[[str, int], str]  # (device id, version) -> signature


class ConfigStore(Protocol):
    async def push_config(
        self,
        devices: Sequence[str],
        body: bytes,
        sha256: str,
        sign: Signer,
        *,
        at_ms: int,
        actor: str,
        target: str,
    ) -> list[tuple[str, int]]:
        """Store `body` as the next version of every device (module invariants); the version
        each got. `IntegrityError` when a device is not registered."""

    async def desired_config(self, device_id: str) -> DesiredConfig | None:
        """The device's newest pushed config, or None when none was pushed."""

    async def desired_configs(self) -> list[DesiredConfig]:
        """The newest pushed config of every device that has one, by device id."""

    async def config_audit(self, limit: int) -> list[ConfigAudit]:
        """Pushes, newest first."""

    async def devices_with_tag(self, tag: str, value: str) -> list[str]:
        """Devices with at least one series carrying tag = value (`tag` in TAG_COLUMNS)."""
