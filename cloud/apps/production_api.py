"""Production entered by operators: the one app that writes production (to
`cloud.storage.production` only; tests/test_layering.py). docs/api.md, docs/figures.md.

    POST /v1/production   {"process","from_ms","to_ms","tonnes","actor","note","supersedes"}
                          admin token; a correction names the entry it `supersedes`
    GET  /v1/production?from_ms=&to_ms=&process=   entries overlapping the window, oldest
                          first, superseded ones included (read token)

Entries are never edited: a correction is a new entry, and the one it supersedes stops counting.
Each stored entry writes one line to the audit log.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.apps import params
from cloud.apps.context import AppContext
from cloud.bearer import BearerCheck, require_bearer
from cloud.errors import RejectedError
from cloud.storage.production import NewEntry, ProductionRecord, ProductionStore
from wire.errors import BodyError
from wire.jsonbody import decode_json
from wire.production import PRODUCTION_PATH, ProductionIn, ProductionList, ProductionView

MAX_TONNES = 1e9
MAX_TEXT = 1000
MAX_WINDOW_MS = 400 * 24 * 3600 * 1000
_ALLOWED = {"from_ms", "to_ms", "process"}


def _bad(message: str, status: int = 400) -> RejectedError:
    body = responses.bad_request(message) if status == 400 else responses.conflict(message)
    return RejectedError(status, body, reason=message)


def view(r: ProductionRecord) -> ProductionView:
    return ProductionView(
        entry_id=r.entry_id,
        process=r.process,
        from_ms=r.from_ms,
        to_ms=r.to_ms,
        tonnes=r.tonnes,
        actor=r.actor,
        note=r.note,
        entered_ms=r.entered_ms,
        supersedes=r.supersedes,
        superseded_by=r.superseded_by,
    )


def checked(body: ProductionIn) -> NewEntry:
    """The entry of a body; RejectedError naming the field at fault."""
    for name, text in (("process", body.process), ("actor", body.actor)):
        if not text.strip() or len(text) > 128 or not text.isprintable():
            raise _bad(f"$.{name}: expected 1-128 printable characters")
    if len(body.note) > MAX_TEXT:
        raise _bad(f"$.note: at most {MAX_TEXT} characters")
    if not 0 <= body.from_ms < body.to_ms <= params.TIME_MAX_MS:
        raise _bad("$.to_ms: the window must be 0 <= from_ms < to_ms")
    if body.to_ms - body.from_ms > MAX_WINDOW_MS:
        raise _bad("$.to_ms: a window is at most 400 days")
    if not (math.isfinite(body.tonnes) and 0 <= body.tonnes <= MAX_TONNES):
        raise _bad(f"$.tonnes: expected 0..{MAX_TONNES:g}")
    if body.supersedes is not None and not 1 <= body.supersedes <= params.ID_MAX:
        raise _bad("$.supersedes: expected an entry id")
    return NewEntry(
        body.process,
        body.from_ms,
        body.to_ms,
        body.tonnes,
        body.note,
        body.actor,
        body.supersedes,
    )


class ProductionHandlers:
    def __init__(self, ctx: AppContext, store: ProductionStore, admin: BearerCheck) -> None:
        self.ctx, self.store, self.admin = ctx, store, admin

    async def add(self, request: Request) -> Response:
        require_bearer(request, self.admin)
        try:
            body = decode_json(await request.body(), ProductionIn)
        except BodyError as exc:
            raise _bad(str(exc)) from None
        entry = checked(body)
        now = self.ctx.now_ms()
        entry_id = await self.store.add_production(entry, now)
        if entry_id is None:
            raise _bad(
                f"$.supersedes: entry {entry.supersedes} is unknown or already superseded", 409
            )
        self.ctx.audit(
            request,
            "production enter",
            entry_id=entry_id,
            process=entry.process,
            tonnes=entry.tonnes,
            supersedes=entry.supersedes,
            actor=entry.actor,
        )
        found = await self.store.list_production(entry.from_ms, entry.to_ms, in_effect_only=False)
        (record,) = [r for r in found if r.entry_id == entry_id]
        return responses.json_response(201, view(record))

    async def list(self, request: Request) -> Response:
        require_bearer(request, self.ctx.api)
        q = params.query(request)
        unknown = set(q) - _ALLOWED
        if unknown:
            raise _bad(f"unknown parameter {sorted(unknown)[0]!r}")
        to_ms = params.time_ms(q, "to_ms", params.TIME_MAX_MS)
        from_ms = params.time_ms(q, "from_ms", 0)
        if from_ms >= to_ms:
            raise _bad("from_ms must be before to_ms")
        found = await self.store.list_production(from_ms, to_ms, in_effect_only=False)
        process = q.get("process")
        entries = [view(r) for r in found if process is None or r.process == process]
        return responses.json_response(200, ProductionList(entries=entries))


def routes(ctx: AppContext, store: ProductionStore, admin: BearerCheck) -> list[Route]:
    h = ProductionHandlers(ctx, store, admin)
    return [
        Route(PRODUCTION_PATH, ctx.endpoint("production_add", h.add), methods=["POST"]),
        Route(PRODUCTION_PATH, ctx.endpoint("production", h.list), methods=["GET"]),
    ]
