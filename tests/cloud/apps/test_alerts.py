"""Alerts: rules, grouping, the audit trail and the outbox on both stores, webhook deliveries to a
real HTTP receiver that restarts, and emails to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import email
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import strategies as st

from cloud.apps import alerts
from cloud.apps.alert_delivery import Sender, SmtpConfig, load_rules, raise_findings
from cloud.apps.alerts import Rule, Webhook
from cloud.apps.anomalies import Finding
from cloud.storage.store import Store
from tests.cloud.apps import plant as synth
from tests.cloud.apps.test_efficiency import feed
from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, Receiver
from tests.cloud.helpers import free_port

NOW = 1_790_000_000_000
SECRET = "s3cret"


def finding(kind: str = "night_flow", subject: str = "gw-a/water_volume", **kw: object) -> Finding:
    base: dict[str, object] = {
        "from_ms": NOW - 3_600_000,
        "to_ms": NOW,
        "expected": 0.2,
        "seen": 2.2,
        "unit": "m³/h",
        "basis": "median of 14 comparable days, MAD 0.0015",
        "process": "line1",
        "medium": "water",
    }
    base.update(kw)
    return Finding(kind, subject, **base)  # type: ignore[arg-type]


# -- pure ----------------------------------------------------------------------------------------


def test_rules_match_by_kind_medium_process_and_subject() -> None:
    f = finding()
    assert alerts.matches(Rule(id="all"), f)
    assert alerts.matches(Rule(id="r", kinds=["night_flow"], media=["water"]), f)
    assert not alerts.matches(Rule(id="r", kinds=["stuck"]), f)
    assert not alerts.matches(Rule(id="r", processes=["line2"]), f)
    assert not alerts.matches(Rule(id="r", subjects=["gw-b"]), f)
    assert alerts.group_key(Rule(id="r"), f) == "r|night_flow|gw-a/water_volume"
    # thresholds: 0.2 -> 2.2 m³/h is 2.0 off, ten times the expected value
    assert alerts.matches(Rule(id="r", min_delta=2.0, min_ratio=10.0), f)
    assert not alerts.matches(Rule(id="r", min_delta=2.5), f)
    assert not alerts.matches(Rule(id="r", min_ratio=10.5), f)
    with pytest.raises(msgspec.ValidationError):
        alerts.parse_rule(b'{"id": "x", "kinds": "stuck"}')


@given(st.binary(max_size=200), st.integers(0, 2**40), st.binary(min_size=1, max_size=200))
def test_signature_verifies_and_any_change_breaks_it(body, ts, other) -> None:
    header = alerts.sign(SECRET, ts, body)
    assert alerts.verify(SECRET, header, body)
    assert not alerts.verify("other", header, body)
    if other != body:
        assert not alerts.verify(SECRET, header, other)
    assert not alerts.verify(SECRET, "garbage", body)


def test_backoff_grows_and_is_capped() -> None:
    waits = [alerts.backoff_ms(n) for n in range(1, 40)]
    assert waits == sorted(waits)
    assert waits[0] == 2 * alerts.BACKOFF_BASE_MS
    assert waits[-1] == alerts.BACKOFF_CAP_MS


# -- the store ------------------------------------------------------------------------------------


async def test_a_flapping_finding_makes_one_alert_with_an_audit_trail(store: Store) -> None:
    rule = Rule(id="leaks", kinds=["night_flow"], emails=["ops@example.org"])
    await store.put_rule(rule.id, msgspec.json.encode(rule).decode(), NOW)
    rules = await load_rules(store)
    assert rules == [rule]
    opened = await raise_findings(store, rules, [finding()], NOW)
    assert len(opened) == 1
    for k in range(1, 4):  # the same leak found again and again: no new alert
        assert await raise_findings(store, rules, [finding()], NOW + k) == []
    assert await raise_findings(store, rules, [finding(kind="stuck")], NOW) == []  # no rule
    (alert,) = await store.list_alerts()
    assert (alert.state, alert.occurrences, alert.last_ms) == ("open", 4, NOW + 3)
    assert len(await store.due_deliveries(NOW + 10, 100)) == 1

    assert await store.set_state(
        alert.alert_id, "acknowledged", actor="ana", note="on it", now_ms=NOW + 5
    )
    assert await raise_findings(store, rules, [finding()], NOW + 6) == []  # still live
    assert await store.set_state(
        alert.alert_id, "resolved", actor="ana", note="valve", now_ms=NOW + 7
    )
    assert not await store.set_state(
        alert.alert_id, "resolved", actor="bo", note="", now_ms=NOW + 8
    )
    trail = [(a.action, a.actor, a.note) for a in await store.audit(alert.alert_id)]
    assert trail == [
        ("opened", "rule", "leaks"),
        ("acknowledged", "ana", "on it"),
        ("resolved", "ana", "valve"),
    ]
    again = await raise_findings(store, rules, [finding()], NOW + 9)  # it comes back
    assert len(again) == 1
    assert again != opened
    assert [a.state for a in await store.list_alerts()] == ["resolved", "open"]


# -- deliveries -----------------------------------------------------------------------------------


class HookReceiver:
    """A minimal real HTTP/1.1 receiver on a fixed port that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.open):  # a restart drops the kept-alive connections too
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append((headers, body))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[int, list[email.message.Message]]]:
    got: list[email.message.Message] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, got
    finally:
        controller.stop()


async def test_webhook_survives_a_receiver_restart_once_each(store: Store) -> None:
    hook = HookReceiver(free_port())
    url = f"http://127.0.0.1:{hook.port}/alerts"
    rule = Rule(id="all", webhooks=[Webhook(url=url, secret=SECRET)])
    await hook.start()
    async with httpx.AsyncClient(timeout=30.0) as client:
        sender = Sender(store, client)
        await raise_findings(store, [rule], [finding(subject="a")], NOW)
        assert await sender.run_once(NOW) == (1, 0)
        await hook.stop()  # the receiver goes down
        await raise_findings(store, [rule], [finding(subject="b")], NOW + 1000)
        assert await sender.run_once(NOW + 1000) == (0, 1)
        assert await sender.run_once(NOW + 2000) == (0, 0)  # backing off: not due yet
        (item,) = await store.due_deliveries(NOW + 1000 + alerts.backoff_ms(1), 10)
        assert item.attempts == 1
        await hook.start()  # and comes back on the same port
        assert await sender.run_once(NOW + 1000 + alerts.backoff_ms(1)) == (1, 0)
        assert await sender.run_once(NOW + 10 * alerts.BACKOFF_CAP_MS) == (0, 0)  # none repeated
    await hook.stop()
    ids = [h["x-tierless-delivery"] for h, _ in hook.received]
    assert len(ids) == 2
    assert len(set(ids)) == 2
    subjects = []
    for headers, body in hook.received:
        assert alerts.verify(SECRET, headers["x-tierless-signature"], body)
        p = msgspec.json.decode(body, type=alerts.AlertPayload)
        subjects.append(p.subject)
        assert p.alert_id > 0
        assert (p.expected, p.seen) == (0.2, 2.2)
    assert subjects == ["a", "b"]


async def test_email_through_a_real_smtp_server_after_it_comes_up(store: Store) -> None:
    rule = Rule(id="mail", emails=["ops@example.org"])
    await raise_findings(store, [rule], [finding()], NOW)
    async with httpx.AsyncClient() as client:
        down = Sender(store, client, SmtpConfig("127.0.0.1", free_port(), "tierless@example.org"))
        assert await down.run_once(NOW) == (0, 1)  # nothing listens: kept for a retry
        async with smtp_server() as (port, got):
            up = Sender(store, client, SmtpConfig("127.0.0.1", port, "tierless@example.org"))
            later = NOW + alerts.backoff_ms(1)
            assert await up.run_once(later) == (1, 0)
            assert await up.run_once(later + alerts.BACKOFF_CAP_MS) == (0, 0)
    (msg,) = got
    assert msg["To"] == "ops@example.org"
    assert msg["Subject"] == "[tierless] night_flow: gw-a/water_volume"
    body = msg.get_payload()
    assert "expected: 0.2 m³/h" in str(body) or "expected: 0.2" in str(msg)


async def test_the_plant_alerts_through_the_api_once_each(receiver: Receiver) -> None:
    """Findings of the synthetic plant become alerts through the API, delivered once each,
    acknowledged and resolved with their audit trail."""
    plant = synth.generate(30)
    await feed(receiver, plant)
    hook = HookReceiver(free_port())
    await hook.start()
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    read = {"authorization": f"Bearer {READ_TOKEN}"}
    rule = {"id": "all", "webhooks": [{"url": f"http://127.0.0.1:{hook.port}/", "secret": SECRET}]}
    c = receiver.client
    assert (await c.put("/v1/alert-rules/all", json=rule, headers=read)).status_code == 401
    assert (await c.put("/v1/alert-rules/other", json=rule, headers=admin)).status_code == 400
    assert (await c.put("/v1/alert-rules/all", json=rule, headers=admin)).status_code == 200
    first = (await c.post("/v1/alerts/evaluate", headers=admin)).json()
    assert first["findings"] == len(first["opened"]) == 6  # five planted, one consequence
    again = (await c.post("/v1/alerts/evaluate", headers=admin)).json()
    assert again == {"findings": 6, "opened": []}  # found again: counted, not raised again
    assert (await c.post("/v1/alerts/deliver", headers=admin)).json() == {
        "delivered": 6,
        "failed": 0,
    }
    assert (await c.post("/v1/alerts/deliver", headers=admin)).json()["delivered"] == 0
    await hook.stop()
    assert len({h["x-tierless-delivery"] for h, _ in hook.received}) == len(hook.received) == 6
    listed = (await c.get("/v1/alerts", headers=read)).json()["alerts"]
    kinds = sorted(a["kind"] for a in listed)
    assert kinds == ["baseload", "night_flow", "silent", "step", "step", "stuck"]
    assert all(a["occurrences"] == 2 for a in listed)
    stuck = next(a for a in listed if a["kind"] == "stuck")
    assert stuck["evidence"]["seen"] == 0
    path = f"/v1/alerts/{stuck['alert_id']}"
    body = {"actor": "ana", "note": "meter replaced"}
    assert (await c.post(path + "/acknowledge", json=body, headers=read)).status_code == 401
    r = await c.post(path + "/acknowledge", json=body, headers=admin)
    assert r.json()["state"] == "acknowledged"
    assert (await c.post(path + "/resolve", json=body, headers=admin)).status_code == 200
    assert (await c.post(path + "/resolve", json=body, headers=admin)).status_code == 404
    trail = (await c.get(path + "/audit", headers=read)).json()["entries"]
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("opened", "rule"),
        ("acknowledged", "ana"),
        ("resolved", "ana"),
    ]
    open_now = (await c.get("/v1/alerts?state=open", headers=read)).json()["alerts"]
    assert len(open_now) == 5

    # The efficiency page shows the live alerts, the findings and the intensity.
    assert (await c.get("/efficiency")).status_code == 401
    r = await c.get("/efficiency", headers=read)
    assert r.status_code == 200, r.text
    assert r.text.count('class="alert"') == 5
    assert r.text.count('class="finding"') == 6
    assert 'data-kind="stuck" data-subject="gw-a/water_volume"' not in r.text
    assert 'data-kind="stuck" data-subject="gw-a/gas_volume"' in r.text
    assert 'class="intensity" data-process="line2" data-medium="electricity"' in r.text


async def test_claims_hand_each_item_to_one_sender(store: Store) -> None:
    """Concurrent claims never share an item; a claim not followed by a mark (a sender that
    died) lets the item come back once its lease is over."""
    rule = Rule(id="mail", emails=["a@example.org", "b@example.org", "c@example.org"])
    await raise_findings(store, [rule], [finding()], NOW)
    claims = await asyncio.gather(*(store.claim_deliveries(NOW, 2, 60_000) for _ in range(4)))
    ids = [item.item_id for claim in claims for item in claim]
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert await store.claim_deliveries(NOW + 59_999, 10, 60_000) == []
    again = await store.claim_deliveries(NOW + 60_000, 10, 60_000)
    assert sorted(i.item_id for i in again) == sorted(ids)
    assert all(i.attempts == 0 for i in again)
