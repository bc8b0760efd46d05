"""The alert interface: the only storage the alert apps may write (tests/test_layering.py says
which apps those are). Rules as data, alerts grouped by key with an audit trail, and an outbox of
deliveries.

Contract:
- `raise_alert` opens an alert for a group key that has no live (open or acknowledged) alert,
  recording the audit entry and queueing its deliveries in the same transaction, so an alert is
  never stored without its deliveries nor delivered without being stored. While the group has a
  live alert it only counts the occurrence: a flapping meter makes one alert.
- An outbox item is delivered until `mark_delivered`; `mark_failed` schedules its retry. A
  sender crash between delivering and marking repeats that one delivery, with the same item id
  (receivers deduplicate on it: docs/alerts.md).
- `claim_deliveries` hands each due item to one sender only: in the transaction that reads them
  it moves their retry time `lease_ms` ahead (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two
  receivers on one database never claim one item), and the sender then marks each delivered or
  failed. A sender that dies holding a claim delays those items by the lease, never loses them.
- Every state change is in the audit trail, with who and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AlertRecord:
    alert_id: int
    group_key: str
    rule_id: str
    kind: str
    subject: str
    state: str  # open | acknowledged | resolved
    first_ms: int
    last_ms: int
    occurrences: int
    evidence: str  # JSON


@dataclass(frozen=True, slots=True)
class AuditEntry:
    alert_id: int
    at_ms: int
    action: str  # opened | repeated | acknowledged | resolved
    actor: str
    note: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery to queue: a channel (webhook, email), its target and the payload (JSON)."""

    channel: str
    target: str
    payload: str


@dataclass(frozen=True, slots=True)
class OutboxItem:
    item_id: int
    alert_id: int
    channel: str
    target: str
    payload: str
    attempts: int
    next_ms: int


class AlertStore(Protocol):
    async def put_rule(self, rule_id: str, body: str, now_ms: int) -> None:
        """Create or replace a rule (JSON body)."""

    async def list_rules(self) -> list[tuple[str, str]]:
        """(rule id, JSON body), by id."""

    async def raise_alert(
        self,
        *,
        group_key: str,
        rule_id: str,
        kind: str,
        subject: str,
        evidence: str,
        now_ms: int,
        deliveries: list[Delivery],
    ) -> tuple[int, bool]:
        """(alert id, True when a new alert was opened): see the module docstring."""

    async def set_state(
        self, alert_id: int, state: str, *, actor: str, note: str, now_ms: int
    ) -> bool:
        """Acknowledge or resolve a live alert; False when it is not live."""

    async def list_alerts(self, state: str | None = None) -> list[AlertRecord]: ...

    async def audit(self, alert_id: int) -> list[AuditEntry]: ...

    async def due_deliveries(self, now_ms: int, limit: int) -> list[OutboxItem]:
        """Undelivered items whose retry time has come, oldest first."""

    async def claim_deliveries(self, now_ms: int, limit: int, lease_ms: int) -> list[OutboxItem]:
        """Due items, oldest first, claimed for `lease_ms` (see the module docstring)."""

    async def mark_delivered(self, item_id: int, now_ms: int) -> None: ...

    async def mark_failed(self, item_id: int, error: str, next_ms: int) -> None: ...
