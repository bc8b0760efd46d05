"""Provenance in the read API: which agent config produced a device's readings.

`GET /v1/devices/{device_id}/batches?from_ms=&to_ms=&limit=` lists the device's stored batches
whose readings or events fall in [from_ms, to_ms), each with the config version its agent named
(the batch's optional `config_version`, docs/protocol.md) and the time range it covers. A reading
of the device at time t came in one of the batches whose range holds t; a gateway never puts
readings of two configs in one batch, so the batches around t name the config that read it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.apps import params
from cloud.apps.context import AppContext
from cloud.bearer import require_bearer
from cloud.storage.reads import BatchRecord
from wire.http import DEVICE_BATCHES_PATH
from wire.query import BatchList, BatchView

DAY_MS = 86_400_000
_PARAMS = ("from_ms", "to_ms", "limit")


def batch_view(r: BatchRecord) -> BatchView:
    return BatchView(
        device_id=r.device_id,
        seq=r.seq,
        received_ms=r.received_ms,
        boot_id=r.boot_id,
        config_version=r.config_version,
        readings=r.readings,
        events=r.events,
        min_ts_ms=r.min_ts_ms,
        max_ts_ms=r.max_ts_ms,
    )


class ProvenanceHandlers:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def batches(self, request: Request) -> Response:
        require_bearer(request, self.ctx.api)
        device_id = params.device_id(request)
        q = params.query(request)
        for name in q:
            if name not in _PARAMS:
                raise params.bad(f"unknown parameter {params.shown(name)}")
        to_ms = params.time_ms(q, "to_ms", self.ctx.now_ms() + 1)
        from_ms = params.time_ms(q, "from_ms", max(0, to_ms - DAY_MS))
        if from_ms >= to_ms:
            raise params.bad("from_ms must be before to_ms")
        cap = self.ctx.raw_readings_limit
        limit = min(params.integer(q, "limit", cap, minimum=1), cap)
        found = await self.ctx.reads.batches(device_id, from_ms, to_ms, limit)
        return responses.json_response(200, BatchList(batches=[batch_view(r) for r in found]))


def routes(ctx: AppContext) -> list[Route]:
    h = ProvenanceHandlers(ctx)
    return [
        Route(
            DEVICE_BATCHES_PATH.replace("{device_id}", "{device_id:path}"),
            ctx.endpoint("device_batches", h.batches),
            methods=["GET"],
        )
    ]
