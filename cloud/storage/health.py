"""The health interface: each gateway's latest health report and a bounded history of them.

Written only by the receiver's health endpoint (`HealthStore.store_health`), read by the apps and
the admin API (`HealthReads`, part of `cloud.storage.reads.ReadStore`). A report is kept as the
JSON body the gateway signed (`wire.http.HealthReport`), so a newer gateway's extra fields
survive; the receiver decodes it before it stores it, and whoever reads decodes it again.

Invariants:
- `device_health` holds one row per device: the report received last.
- `device_health_log` holds at most `keep` rows per device, the newest; the write that adds one
  deletes the oldest beyond `keep` in the same transaction, so the history never grows unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

HEALTH_HISTORY_KEEP = 100  # reports kept per device: at the default 60 s, the last 100 minutes


@dataclass(frozen=True, slots=True)
class HealthRecord:
    device_id: str
    received_ms: int  # the receiver's clock
    body: bytes  # the report's JSON, as received


class HealthStore(Protocol):
    async def store_health(
        self, device_id: str, received_ms: int, body: bytes, *, keep: int = HEALTH_HISTORY_KEEP
    ) -> None:
        """Make `body` the device's latest report and add it to its history (one transaction)."""


class HealthReads(Protocol):
    async def latest_health(self, device_id: str | None = None) -> list[HealthRecord]:
        """The latest report of one device (a list of at most one), or of every device."""

    async def health_history(self, device_id: str, limit: int) -> list[HealthRecord]:
        """The device's reports, newest first, at most `limit`."""
