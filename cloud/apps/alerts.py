"""Alert rules and deliveries, pure: which findings a rule takes, how they group, what a delivery
carries, how it is signed, and when a failed one is retried. docs/alerts.md states it for users.

- A rule (JSON, `Rule`) takes a finding when each of its non-empty lists (`kinds`, `media`,
  `processes`, `subjects`) holds the finding's value, and the finding is at least as far from
  what was expected as its thresholds ask: |seen - expected| >= `min_delta` and
  |seen - expected| >= `min_ratio` * |expected|.
- The group key is rule, kind and subject: while a group has a live alert, further findings only
  count as occurrences of it (a flapping meter makes one alert).
- A webhook delivery is a JSON POST signed with HMAC-SHA256 of `<timestamp>.<body>` under the
  webhook's secret: header `X-Tierless-Signature: t=<unix s>,v1=<hex>`, and
  `X-Tierless-Delivery: <outbox item id>`, the same on every retry, for the receiver to
  deduplicate on. An email carries the same id in its Message-ID.
- Retries back off: `backoff_ms(attempts)` = min(base · 2^attempts, cap).
"""

from __future__ import annotations

import hashlib
import hmac
from email.message import EmailMessage

import msgspec

from cloud.apps.anomalies import Finding

SIGNATURE_HEADER = "X-Tierless-Signature"
DELIVERY_HEADER = "X-Tierless-Delivery"
BACKOFF_BASE_MS = 5_000
BACKOFF_CAP_MS = 3_600_000


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    secret: str


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kinds: list[str] = []
    media: list[str] = []
    processes: list[str] = []
    subjects: list[str] = []
    webhooks: list[Webhook] = []
    emails: list[str] = []
    min_delta: float = 0.0  # in the finding's unit
    min_ratio: float = 0.0  # of the expected value: 0.2 takes findings 20 % off or more


class AlertPayload(msgspec.Struct, frozen=True, kw_only=True):
    """What a delivery carries (the webhook's body; the email's text says the same). The alert
    and delivery ids are filled in when it is sent."""

    alert_id: int = 0
    delivery_id: int = 0
    rule: str
    kind: str
    subject: str
    from_ms: int
    to_ms: int
    expected: float
    seen: float
    unit: str
    basis: str


def parse_rule(body: str | bytes) -> Rule:
    """A rule from JSON; msgspec.ValidationError when it is not one."""
    return msgspec.json.decode(body, type=Rule)


def matches(rule: Rule, f: Finding) -> bool:
    checks = ((rule.kinds, f.kind), (rule.media, f.medium), (rule.processes, f.process))
    if any(allowed and value not in allowed for allowed, value in checks):
        return False
    if rule.subjects and f.subject not in rule.subjects:
        return False
    off = abs(f.seen - f.expected)
    return off >= rule.min_delta and off >= rule.min_ratio * abs(f.expected)


def group_key(rule: Rule, f: Finding) -> str:
    return f"{rule.id}|{f.kind}|{f.subject}"


def payload(rule: Rule, f: Finding) -> AlertPayload:
    return AlertPayload(
        rule=rule.id,
        kind=f.kind,
        subject=f.subject,
        from_ms=f.from_ms,
        to_ms=f.to_ms,
        expected=f.expected,
        seen=f.seen,
        unit=f.unit,
        basis=f.basis,
    )


def sign(secret: str, timestamp_s: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp_s`."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """What a receiver checks: the signature header matches the body."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def backoff_ms(attempts: int) -> int:
    """The wait before retry number `attempts` (1 after the first failure)."""
    return int(min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** min(attempts, 30)))


def email(item_id: int, sender: str, to: str, p: AlertPayload, *, domain: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"[tierless] {p.kind}: {p.subject}"
    msg["Message-ID"] = f"<alert-delivery-{item_id}@{domain}>"
    msg.set_content(
        f"{p.kind} on {p.subject}\n"
        f"window: {p.from_ms} .. {p.to_ms} (epoch ms)\n"
        f"expected: {p.expected:.6g} {p.unit}\n"
        f"seen: {p.seen:.6g} {p.unit}\n"
        f"basis: {p.basis}\n"
        f"rule: {p.rule}, alert {p.alert_id}\n"
    )
    return msg
