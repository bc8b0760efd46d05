"""Alerts from findings, and their delivery from the outbox: the one app that writes (to
`cloud.storage.alerts` only; tests/test_layering.py).

`raise_findings` turns findings into alerts by the rules (`cloud.apps.alerts`): a new alert queues
one delivery per webhook and email of its rule, in the transaction that stores it. `Sender.run_once`
delivers what is due: a webhook answering 2xx, or an SMTP server accepting the message, marks the
item delivered; anything else schedules a retry with backoff, so a receiver that is down or
restarting gets every alert once it is back, and an alert delivered is never sent again.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import msgspec

from cloud.apps import alerts
from cloud.apps.alerts import AlertPayload, Rule, Webhook
from cloud.apps.anomalies import Finding
from cloud.storage.alerts import AlertStore, Delivery, OutboxItem


async def load_rules(store: AlertStore) -> list[Rule]:
    return [alerts.parse_rule(body) for _, body in await store.list_rules()]


async def raise_findings(
    store: AlertStore, rules: Sequence[Rule], findings: Sequence[Finding], now_ms: int
) -> list[int]:
    """The ids of the alerts opened (not those that only counted an occurrence)."""
    opened = []
    for f in findings:
        for rule in rules:
            if not alerts.matches(rule, f):
                continue
            body = msgspec.json.encode(alerts.payload(rule, f)).decode()
            deliveries = [
                Delivery("webhook", msgspec.json.encode(w).decode(), body) for w in rule.webhooks
            ]
            deliveries += [Delivery("email", to, body) for to in rule.emails]
            alert_id, new = await store.raise_alert(
                group_key=alerts.group_key(rule, f),
                rule_id=rule.id,
                kind=f.kind,
                subject=f.subject,
                evidence=body,
                now_ms=now_ms,
                deliveries=deliveries,
            )
            if new:
                opened.append(alert_id)
    return opened


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    domain: str = "tierless.invalid"
    timeout_s: float = 10.0


# How long a pass holds the items it claimed (cloud.storage.alerts): longer than a pass of
# `batch` items can take (50 x the 10 s SMTP/HTTP timeouts), so no other receiver sends one
# while it is being sent; a receiver that dies mid-pass delays those items by this much.
LEASE_MS = 10 * 60_000


class Sender:
    """Delivers due outbox items; `run_once` is one pass, the caller decides how often. Each
    item is claimed before it is sent, so receivers sharing one database send it once."""

    def __init__(
        self,
        store: AlertStore,
        client: httpx.AsyncClient,
        smtp: SmtpConfig | None = None,
        *,
        batch: int = 50,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self.store, self.client, self.smtp, self.batch = store, client, smtp, batch
        self.lease_ms = lease_ms

    async def run_once(self, now_ms: int) -> tuple[int, int]:
        """(delivered, failed) in this pass."""
        done = failed = 0
        for item in await self.store.claim_deliveries(now_ms, self.batch, self.lease_ms):
            try:
                await self._send(item, now_ms)
            except (httpx.HTTPError, OSError, smtplib.SMTPException, DeliveryError) as exc:
                failed += 1
                retry = now_ms + alerts.backoff_ms(item.attempts + 1)
                await self.store.mark_failed(item.item_id, f"{type(exc).__name__}: {exc}", retry)
                continue
            await self.store.mark_delivered(item.item_id, now_ms)
            done += 1
        return done, failed

    async def _send(self, item: OutboxItem, now_ms: int) -> None:
        p = msgspec.json.decode(item.payload, type=AlertPayload)
        p = msgspec.structs.replace(p, alert_id=item.alert_id, delivery_id=item.item_id)
        if item.channel == "webhook":
            hook = msgspec.json.decode(item.target, type=Webhook)
            body = msgspec.json.encode(p)
            headers = {
                "content-type": "application/json",
                alerts.SIGNATURE_HEADER: alerts.sign(hook.secret, now_ms // 1000, body),
                alerts.DELIVERY_HEADER: str(item.item_id),
            }
            r = await self.client.post(hook.url, content=body, headers=headers)
            if not 200 <= r.status_code < 300:
                raise DeliveryError(f"webhook answered {r.status_code}")
        elif item.channel == "email":
            if self.smtp is None:
                raise DeliveryError("no SMTP server configured")
            smtp = self.smtp
            msg = alerts.email(item.item_id, smtp.sender, item.target, p, domain=smtp.domain)

            def send() -> None:
                with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as s:
                    s.send_message(msg)

            await asyncio.to_thread(send)
        else:
            raise DeliveryError(f"unknown channel {item.channel!r}")


class DeliveryError(Exception):
    """A delivery the other side did not accept."""
