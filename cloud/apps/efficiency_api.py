"""`GET /v1/figures/efficiency`: production, intensity and anomalies (cloud.apps.efficiency) over
a window, behind the read token.

    GET /v1/figures/efficiency?from_ms=&to_ms=&tz=&processes=&direction=&shifts=

Defaults: the last 30 days up to now (the detectors judge each day against the days before it in
the window), UTC, the processes named by the window's tickets, production = outbound tickets,
shifts early 6-14, late 14-22, night 22-6. `shifts` is `name:start-end,...` in local hours.
"""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.apps import efficiency, params
from cloud.apps.context import AppContext
from cloud.apps.intensity import ProcessConfig, Shift
from cloud.apps.query import time_zone
from cloud.bearer import require_bearer
from cloud.errors import RejectedError, RowBudgetError
from wire.efficiency import EFFICIENCY_PATH, Efficiency, FindingView, IntensityView

DAY_MS = 24 * 3600 * 1000
MAX_RANGE_MS = 400 * DAY_MS
DEFAULT_RANGE_MS = 30 * DAY_MS
ROW_BUDGET = 5_000_000
_ALLOWED = {"from_ms", "to_ms", "tz", "processes", "direction", "shifts"}


def _bad(message: str) -> RejectedError:
    return RejectedError(400, responses.bad_request(message), reason=message)


def parse_shifts(text: str) -> tuple[Shift, ...]:
    """`early:6-14,late:14-22` -> shifts; ValueError on anything else."""
    out = []
    for part in text.split(","):
        name, _, hours = part.partition(":")
        start, _, end = hours.partition("-")
        out.append(Shift(name.strip(), int(start), int(end)))
    return tuple(out)


class EfficiencyHandler:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def efficiency(self, request: Request) -> Response:
        require_bearer(request, self.ctx.api)
        q = params.query(request)  # strict: UTF-8, printable, each given once
        unknown = set(q.keys()) - _ALLOWED
        if unknown:
            raise _bad(f"unknown parameter {sorted(unknown)[0]!r}")
        tz = time_zone(q) if "tz" in q else ZoneInfo(self.ctx.plant.tz)
        now = self.ctx.now_ms()
        to_ms = params.time_ms(q, "to_ms", min(now + 1, params.TIME_MAX_MS))
        from_ms = params.time_ms(q, "from_ms", max(0, to_ms - DEFAULT_RANGE_MS))
        if not 0 <= from_ms < to_ms or to_ms - from_ms > MAX_RANGE_MS:
            raise _bad("from_ms must be before to_ms, at most 400 days apart")
        direction = q.get("direction")
        if direction not in (None, "out", "in"):
            raise _bad("direction must be out or in")
        names = [p for p in q.get("processes", "").split(",") if p]
        config = dataclasses.replace(self.ctx.plant, tz=tz.key)
        if names:
            known = {p.name: p for p in config.processes}
            chosen = tuple(known.get(n) or ProcessConfig(n) for n in names)
            config = dataclasses.replace(config, processes=chosen)
        else:
            config = await efficiency.plant_for(self.ctx.reads, config, from_ms, to_ms)
        if direction is not None:
            config = dataclasses.replace(
                config,
                processes=tuple(
                    dataclasses.replace(p, direction=direction) for p in config.processes
                ),
            )
        try:
            if "shifts" in q:
                config = dataclasses.replace(config, shifts=parse_shifts(q["shifts"]))
        except ValueError as exc:
            raise _bad(f"shifts: {exc}") from None
        names = [p.name for p in config.processes]
        until_ms = min(to_ms, now + 1)
        try:
            report = await efficiency.load(
                self.ctx.reads,
                config,
                from_ms=from_ms,
                to_ms=to_ms,
                until_ms=until_ms,
                budget_rows=ROW_BUDGET,
            )
        except RowBudgetError as exc:
            raise _bad("too many readings for one request; narrow the range") from exc
        body = Efficiency(
            from_ms=from_ms,
            to_ms=to_ms,
            until_ms=until_ms,
            tz=tz.key,
            processes=names,
            names={p.name: p.display or p.name for p in config.processes},
            tonnes=report.tonnes,
            sources=report.sources,
            intensity=[IntensityView(**dataclasses.asdict(r)) for r in report.intensity],
            findings=[FindingView(**dataclasses.asdict(f)) for f in report.findings],
        )
        return responses.json_response(200, body)


def routes(ctx: AppContext) -> list[Route]:
    h = EfficiencyHandler(ctx)
    return [Route(EFFICIENCY_PATH, ctx.endpoint("efficiency", h.efficiency), methods=["GET"])]
