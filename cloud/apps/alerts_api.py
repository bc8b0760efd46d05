"""The alerts API: list alerts and their audit trail (read token); acknowledge, resolve, put rules,
evaluate the efficiency findings and deliver the outbox (admin token). docs/alerts.md.

    GET  /v1/alerts?state=                       alerts, oldest first
    GET  /v1/alerts/{id}/audit                   who did what, when
    POST /v1/alerts/{id}/acknowledge|resolve     {"actor", "note"}
    GET  /v1/alert-rules                         the rules
    PUT  /v1/alert-rules/{id}                    a rule (cloud.apps.alerts.Rule, JSON)
    POST /v1/alerts/evaluate                     findings of the last 30 days -> alerts
    POST /v1/alerts/deliver                      one pass over the outbox

Evaluation and delivery run when called, and inside `edge-cloud serve` every
`--alerts-interval-s` (`cloud.apps.alert_scheduler`). Email goes through the SMTP server of
TIERLESS_SMTP_HOST, TIERLESS_SMTP_PORT (25) and TIERLESS_SMTP_FROM; without one, email
deliveries wait in the outbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.apps import alert_scheduler, alerts, params
from cloud.apps.alert_delivery import Sender, SmtpConfig, load_rules
from cloud.apps.context import AppContext, Handler
from cloud.bearer import BearerCheck, require_bearer
from cloud.errors import RejectedError
from cloud.storage.alerts import AlertRecord, AlertStore
from wire.alerts import (
    ALERT_AUDIT_PATH,
    ALERT_RULE_PATH,
    ALERT_RULES_PATH,
    ALERT_STATE_PATH,
    ALERTS_DELIVER_PATH,
    ALERTS_EVALUATE_PATH,
    ALERTS_PATH,
    AlertList,
    AlertView,
    AuditList,
    AuditView,
    Delivered,
    Evaluated,
    RuleList,
    StateChange,
)
from wire.errors import BodyError
from wire.jsonbody import decode_json

DAY_MS = 24 * 3600 * 1000
STATES = ("open", "acknowledged", "resolved")
ACTIONS = {"acknowledge": "acknowledged", "resolve": "resolved"}


def _bad(message: str, status: int = 400) -> RejectedError:
    body = responses.bad_request(message) if status == 400 else responses.NOT_FOUND
    return RejectedError(status, body, reason=message)


def smtp_from_env(env: Mapping[str, str]) -> SmtpConfig | None:
    host = env.get("TIERLESS_SMTP_HOST")
    if not host:
        return None
    sender = env.get("TIERLESS_SMTP_FROM", "tierless@localhost")
    return SmtpConfig(host, int(env.get("TIERLESS_SMTP_PORT", "25")), sender)


def alert_view(a: AlertRecord) -> AlertView:
    evidence = msgspec.json.decode(a.evidence)
    return AlertView(
        alert_id=a.alert_id,
        rule_id=a.rule_id,
        kind=a.kind,
        subject=a.subject,
        state=a.state,
        first_ms=a.first_ms,
        last_ms=a.last_ms,
        occurrences=a.occurrences,
        evidence=evidence if isinstance(evidence, dict) else {},
    )


class AlertHandlers:
    def __init__(
        self, ctx: AppContext, store: AlertStore, admin: BearerCheck, smtp: SmtpConfig | None
    ) -> None:
        self.ctx, self.store, self.admin, self.smtp = ctx, store, admin, smtp

    def _id(self, request: Request) -> int:
        # A plain `{alert_id}`: Starlette's `:int` convertor fails with a 500 on 5,000 digits.
        raw: str = request.path_params["alert_id"]
        return params.parse_int(raw, "alert_id", minimum=1, maximum=params.ID_MAX)

    async def list(self, request: Request) -> Response:
        require_bearer(request, self.ctx.api)
        state = params.query(request).get("state")
        if state is not None and state not in STATES:
            raise _bad(f"state must be one of {', '.join(STATES)}")
        found = await self.store.list_alerts(state)
        return responses.json_response(200, AlertList(alerts=[alert_view(a) for a in found]))

    async def audit(self, request: Request) -> Response:
        require_bearer(request, self.ctx.api)
        alert_id = self._id(request)
        entries = await self.store.audit(alert_id)
        if not entries:
            raise _bad("unknown alert", 404)
        views = [
            AuditView(at_ms=e.at_ms, action=e.action, actor=e.actor, note=e.note) for e in entries
        ]
        return responses.json_response(200, AuditList(alert_id=alert_id, entries=views))

    def change(self, action: str) -> Handler:
        async def handler(request: Request) -> Response:
            return await self._change(request, action)

        return handler

    async def _change(self, request: Request, action: str) -> Response:
        require_bearer(request, self.admin)
        try:
            body = decode_json(await request.body(), StateChange)
        except BodyError as exc:
            raise _bad(str(exc)) from None
        if not body.actor.strip():
            raise _bad("actor is required")
        alert_id = self._id(request)
        changed = await self.store.set_state(
            alert_id, ACTIONS[action], actor=body.actor, note=body.note, now_ms=self.ctx.now_ms()
        )
        if not changed:
            raise _bad("no live alert with that id", 404)
        (record,) = [a for a in await self.store.list_alerts() if a.alert_id == alert_id]
        return responses.json_response(200, alert_view(record))

    async def rules(self, request: Request) -> Response:
        require_bearer(request, self.ctx.api)
        found = [msgspec.to_builtins(r) for r in await load_rules(self.store)]
        return responses.json_response(200, RuleList(rules=found))

    async def put_rule(self, request: Request) -> Response:
        require_bearer(request, self.admin)
        rule_id: str = request.path_params["rule_id"]
        if not 1 <= len(rule_id) <= 128 or not rule_id.isprintable():
            raise _bad("rule_id must be 1-128 printable characters")
        try:
            rule = decode_json(await request.body(), alerts.Rule)
        except BodyError as exc:
            raise _bad(f"bad rule: {exc}") from None
        if rule.id != rule_id:
            raise _bad("the rule's id must be the one in the path")
        await self.store.put_rule(rule.id, msgspec.json.encode(rule).decode(), self.ctx.now_ms())
        return responses.json_response(200, RuleList(rules=[msgspec.to_builtins(rule)]))

    async def evaluate(self, request: Request) -> Response:
        require_bearer(request, self.admin)
        found, opened = await alert_scheduler.evaluate(
            self.ctx.reads, self.store, self.ctx.plant, self.ctx.now_ms()
        )
        return responses.json_response(200, Evaluated(findings=found, opened=opened))

    async def deliver(self, request: Request) -> Response:
        require_bearer(request, self.admin)
        async with httpx.AsyncClient(timeout=10.0) as client:
            done, failed = await Sender(self.store, client, self.smtp).run_once(self.ctx.now_ms())
        return responses.json_response(200, Delivered(delivered=done, failed=failed))


def routes(
    ctx: AppContext,
    store: AlertStore,
    admin: BearerCheck,
    env: Mapping[str, str] | None = None,
) -> list[Route]:
    h = AlertHandlers(ctx, store, admin, smtp_from_env(os.environ if env is None else env))
    e = ctx.endpoint
    alert_id = "{alert_id}"
    return [
        Route(ALERTS_PATH, e("alerts", h.list), methods=["GET"]),
        Route(ALERTS_EVALUATE_PATH, e("alerts_evaluate", h.evaluate), methods=["POST"]),
        Route(ALERTS_DELIVER_PATH, e("alerts_deliver", h.deliver), methods=["POST"]),
        Route(
            ALERT_AUDIT_PATH.replace("{alert_id}", alert_id),
            e("alert_audit", h.audit),
            methods=["GET"],
        ),
        *(
            Route(
                ALERT_STATE_PATH.replace("{alert_id}", alert_id).replace("{action}", action),
                e(f"alert_{action}", h.change(action)),
                methods=["POST"],
            )
            for action in ACTIONS
        ),
        Route(ALERT_RULES_PATH, e("alert_rules", h.rules), methods=["GET"]),
        Route(ALERT_RULE_PATH, e("alert_rule", h.put_rule), methods=["PUT"]),
    ]
