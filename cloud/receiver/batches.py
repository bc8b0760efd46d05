"""`POST /v1/batches` and `GET /v1/chain/head`: the device data path.

Order of checks for a batch (each refusal is final; later steps never run):

    1. declared Content-Length over the wire cap          413  (nothing read)
    2. Content-Type / Content-Encoding not accepted       415
    3. client address over its failed-authentication budget  429 + Retry-After
       signature headers, key look-up, signature          401  (one body for all; charged
                                                               to the client address)
    4. key revoked/expired, device disabled               403
    5. per-device rate                                    429 + Retry-After
    6. body read, cut at the wire cap                     413
    7. Content-Digest against the body as received        401
    8. bounded decompression, bounded decoding            413 / 415 / 400   (in `decode_slots`)
    9. body's device_id is the key's device               403
   10. one store transaction: key and device state re-checked under the device's row lock
       (revoked or disabled since step 4: 403, nothing written), chain check + all writes
                                                          200 stored/duplicate, 403, 409

Decode work for bodies over `decode_in_thread_bytes` runs in a worker thread so that one large
batch does not stall the event loop; `decode_slots` bounds how many run at once (memory).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.errors import RejectedError
from cloud.receiver.auth import authenticate_device, unauthorized
from cloud.receiver.context import Context
from cloud.receiver.limits import check_declared_size, read_body
from cloud.storage.batches import BatchMeta, BatchResult, Outcome
from cloud.storage.devices import KeyRecord
from wire.codec import MEDIA_TYPE, batch_digest, decode_batch
from wire.compression import available_encodings, decompress
from wire.digest import verify_content_digest
from wire.errors import (
    DecodeError,
    SignatureError,
    TooLargeError,
    UnsupportedEncodingError,
)
from wire.http import (
    BATCHES_PATH,
    CHAIN_HEAD_PATH,
    AckStatus,
    BatchAck,
    ChainHead,
    ErrorBody,
    ErrorCode,
)
from wire.keys import b64url_encode
from wire.models import Batch
from wire.signatures import ParsedSignature

_ENCODINGS = frozenset(available_encodings())
EMPTY_BODY_CAP = 1024


def unsupported(reason: str) -> RejectedError:
    return RejectedError(415, responses.UNSUPPORTED, reason=reason)


def require_content_type(request: Request, media_type: str) -> None:
    values = request.headers.getlist("content-type")
    if len(values) != 1 or values[0].split(";")[0].strip().lower() != media_type:
        raise unsupported("content-type")


def content_encoding(request: Request) -> str | None:
    """The one content-coding of the body, None for none; 415 for anything we do not read."""
    values = request.headers.getlist("content-encoding")
    if not values:
        return None
    coding = values[0].strip().lower() if len(values) == 1 else ""
    if coding not in _ENCODINGS:
        raise unsupported("content-encoding")
    return coding


def check_digest(headers: dict[str, str], body: bytes) -> None:
    try:
        verify_content_digest(headers.get("content-digest", ""), body)
    except SignatureError as exc:
        raise unauthorized(f"digest: {exc}") from exc


def decode(body: bytes, encoding: str | None, max_decoded: int) -> tuple[Batch, bytes]:
    """Decompress and decode; RejectedError with the protocol status on failure."""
    try:
        raw = decompress(body, encoding, max_decoded)
        return decode_batch(raw), batch_digest(raw)
    except TooLargeError as exc:
        raise RejectedError(413, responses.TOO_LARGE, reason=f"decode: {exc}") from exc
    except UnsupportedEncodingError as exc:
        raise unsupported(f"decode: {exc}") from exc
    except DecodeError as exc:
        raise RejectedError(400, responses.bad_request("invalid batch"), reason=f"{exc}") from exc


def result_response(result: BatchResult, server_time_ms: int) -> Response:
    if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
        ack = BatchAck(
            status=AckStatus(result.outcome), seq=result.seq, server_time_ms=server_time_ms
        )
        return responses.json_response(200, ack)
    if result.outcome is Outcome.KEY_REFUSED:
        return responses.json_response(403, responses.FORBIDDEN)
    conflict = result.outcome is Outcome.CHAIN_CONFLICT
    body = ErrorBody(
        error=ErrorCode(result.outcome),
        expected_seq=result.expected_seq,
        reason=result.reason if conflict else None,
    )
    return responses.json_response(409, body)


class IngestHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _authenticate(
        self, request: Request
    ) -> tuple[KeyRecord, ParsedSignature, dict[str, str]]:
        """`authenticate_device`, behind the client address's budget of failures: an address
        that keeps failing (made-up key ids, bad signatures) gets 429 before any work."""
        ctx = self.ctx
        address = request.client.host if request.client else "unknown"
        ctx.auth_failures.check_open(address, reason=f"auth failures from {address}")
        try:
            return await authenticate_device(
                request,
                ctx.key_records,
                ctx.keys,
                public_url=ctx.config.public_url,
                now_ms=ctx.now_ms,
            )
        except RejectedError as exc:
            if exc.status == 401:
                ctx.auth_failures.charge(address)
            raise

    async def post_batch(self, request: Request) -> Response:
        ctx, limits = self.ctx, self.ctx.config.limits
        started = ctx.monotonic()
        check_declared_size(request, limits.max_wire_bytes)
        require_content_type(request, MEDIA_TYPE)
        encoding = content_encoding(request)
        key, parsed, headers = await self._authenticate(request)
        ctx.device_limiter.check(key.device_id, reason=f"device {key.device_id} rate")
        body = await read_body(request, limits.max_wire_bytes, timeout_s=limits.body_timeout_s)
        check_digest(headers, body)
        async with ctx.decode_slots:
            if len(body) > limits.decode_in_thread_bytes:
                batch, digest = await asyncio.to_thread(
                    decode, body, encoding, limits.max_decoded_bytes
                )
            else:
                batch, digest = decode(body, encoding, limits.max_decoded_bytes)
        if batch.device_id != key.device_id:
            raise RejectedError(
                403,
                responses.FORBIDDEN_DEVICE,
                reason=f"key of {key.device_id!r} sent a batch of {batch.device_id!r}",
            )
        meta = BatchMeta(
            device_id=key.device_id,
            seq=batch.seq,
            digest=digest,
            prev=batch.prev,
            keyid=key.keyid,
            sig_created=parsed.params.created,
            received_ms=ctx.now_ms(),
            content_encoding=encoding,
            wire_bytes=len(body),
        )
        result = await ctx.store.store_batch(meta, batch)
        ctx.metrics.batches.inc(str(result.outcome))
        if result.outcome is Outcome.KEY_REFUSED:
            ctx.key_records.forget(key.keyid)  # the cached record is out of date
            ctx.metrics.rejections.inc(responses.FORBIDDEN.error)
        if result.outcome is Outcome.STORED:
            ctx.metrics.readings.inc(amount=batch.reading_count())
            ctx.metrics.events.inc(amount=len(batch.events))
        if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
            ctx.metrics.ingest_seconds.observe(ctx.monotonic() - started)
        return result_response(result, ctx.now_ms())

    async def chain_head(self, request: Request) -> Response:
        ctx = self.ctx
        check_declared_size(request, EMPTY_BODY_CAP)
        key, _, headers = await self._authenticate(request)
        ctx.device_limiter.check(key.device_id, reason=f"device {key.device_id} rate")
        body = await read_body(request, EMPTY_BODY_CAP, timeout_s=ctx.config.limits.body_timeout_s)
        check_digest(headers, body)
        head = await ctx.store.chain_head(key.device_id)
        if head is None:  # pragma: no cover - a key always belongs to a device
            raise RejectedError(403, responses.FORBIDDEN, reason="device vanished")
        answer = ChainHead(
            device_id=head.device_id,
            seq=head.seq,
            digest=b64url_encode(head.digest),
            server_time_ms=ctx.now_ms(),
        )
        return responses.json_response(200, answer)


def routes(ctx: Context) -> list[Route]:
    h = IngestHandlers(ctx)
    return [
        Route(BATCHES_PATH, ctx.endpoint("batches", h.post_batch), methods=["POST"]),
        Route(CHAIN_HEAD_PATH, ctx.endpoint("chain_head", h.chain_head), methods=["GET"]),
    ]
