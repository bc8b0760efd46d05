"""The alerts of the HTTP contract: rules, alerts, their audit trail, and the operator's actions
(docs/alerts.md)."""

from __future__ import annotations

from typing import Any

import msgspec

ALERTS_PATH = "/v1/alerts"
ALERT_AUDIT_PATH = "/v1/alerts/{alert_id}/audit"
ALERT_STATE_PATH = "/v1/alerts/{alert_id}/{action}"  # acknowledge | resolve
ALERT_RULES_PATH = "/v1/alert-rules"
ALERT_RULE_PATH = "/v1/alert-rules/{rule_id}"
ALERTS_EVALUATE_PATH = "/v1/alerts/evaluate"
ALERTS_DELIVER_PATH = "/v1/alerts/deliver"


class AlertView(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: int
    rule_id: str
    kind: str
    subject: str
    state: str  # open | acknowledged | resolved
    first_ms: int
    last_ms: int
    occurrences: int
    evidence: dict[str, Any]  # the finding: window, expected, seen, unit, basis


class AlertList(msgspec.Struct, frozen=True, kw_only=True):
    alerts: list[AlertView]


class AuditView(msgspec.Struct, frozen=True, kw_only=True):
    at_ms: int
    action: str
    actor: str
    note: str


class AuditList(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: int
    entries: list[AuditView]


class StateChange(msgspec.Struct, frozen=True, kw_only=True):
    """The body of acknowledge and resolve: who, and why."""

    actor: str
    note: str = ""


class RuleList(msgspec.Struct, frozen=True, kw_only=True):
    rules: list[dict[str, Any]]


class Evaluated(msgspec.Struct, frozen=True, kw_only=True):
    findings: int
    opened: list[int]


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    delivered: int
    failed: int
