"""`POST /v1/health`: a gateway's health report, verified like a batch and stored.

Order of checks (each refusal is final; later steps never run):

    1. declared Content-Length over `MAX_HEALTH_BYTES`      413  (nothing read)
    2. Content-Type not application/json                   415
    3. signature headers, key look-up, signature           401  (one body for all)
    4. key revoked/expired, device disabled                403
    5. per-device rate (shared with batches)               429 + Retry-After
    6. body read, cut at `MAX_HEALTH_BYTES`                413
    7. Content-Digest against the body                     401
    8. body decodes as `wire.http.HealthReport`            400
    9. the report's device_id is the key's device          403
   10. stored as the device's latest and in its history    200 `HealthAck`, with the version
                                                            of the config pushed to it, if any

A report is state, not data: the receiver keeps the newest and a bounded history
(`cloud.storage.health`), and a gateway never resends one.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.errors import RejectedError
from cloud.receiver.auth import authenticate_device
from cloud.receiver.batches import check_digest, require_content_type
from cloud.receiver.context import Context
from cloud.receiver.limits import check_declared_size, read_body
from wire.http import HEALTH_REPORT_PATH, JSON_MEDIA_TYPE, ErrorBody, ErrorCode, HealthAck
from wire.http import HealthReport as HealthReportBody

MAX_HEALTH_BYTES = 64 * 1024  # a report with a few hundred sources fits many times over
FORBIDDEN_REPORT = ErrorBody(error=ErrorCode.FORBIDDEN, message="the report names another device")


async def post_health(ctx: Context, request: Request) -> Response:
    check_declared_size(request, MAX_HEALTH_BYTES)
    require_content_type(request, JSON_MEDIA_TYPE)
    key, _, headers = await authenticate_device(
        request, ctx.key_records, ctx.keys, public_url=ctx.config.public_url, now_ms=ctx.now_ms
    )
    ctx.device_limiter.check(key.device_id, reason=f"device {key.device_id} rate")
    body = await read_body(request, MAX_HEALTH_BYTES, timeout_s=ctx.config.limits.body_timeout_s)
    check_digest(headers, body)
    try:
        report = msgspec.json.decode(body, type=HealthReportBody)
    except msgspec.DecodeError as exc:
        raise RejectedError(
            400, responses.bad_request("invalid health report"), reason=str(exc)
        ) from exc
    if report.device_id != key.device_id:
        raise RejectedError(
            403,
            FORBIDDEN_REPORT,
            reason=f"key of {key.device_id!r} sent a report of {report.device_id!r}",
        )
    now = ctx.now_ms()
    await ctx.store.store_health(key.device_id, now, body)
    desired = await ctx.store.desired_config(key.device_id)
    ack = HealthAck(
        status="stored",
        server_time_ms=now,
        desired_config_version=None if desired is None else desired.version,
    )
    return responses.json_response(200, ack)


def routes(ctx: Context) -> list[Route]:
    async def handler(request: Request) -> Response:
        return await post_health(ctx, request)

    return [Route(HEALTH_REPORT_PATH, ctx.endpoint("health", handler), methods=["POST"])]
