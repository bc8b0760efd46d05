"""`POST /v1/enroll` and `POST /v1/keys/rotate`: how a device key comes to be trusted.

Enrolment: the body names the token, the device and the new public key; the request is signed by
that new key (tag `tierless-enroll-v1`), which proves possession. Every refusal after the body
parses (bad signature or digest, malformed, unknown, used, expired, locked or wrong-device token)
is the same `401 {"error":"enrollment_refused"}`. The token is consumed in the store transaction,
so it works once; the same key enrolling again with its used token gets the same 201 (a gateway
that lost the first answer retries safely).

Rotation: signed by the current key; the body carries the new key and `pop`, the new key's
signature over `tierless-rotate-v1|<device_id>|<old keyid>|<new keyid>`. The old key stays valid
for `key_overlap_ms`. Repeating the request gives the same answer.

Both are rate-limited per client address before any work.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.errors import RejectedError
from cloud.receiver.auth import authenticate_device, parse_signature_headers, target_uri
from cloud.receiver.batches import check_digest, require_content_type
from cloud.receiver.configkey import public_config_key
from cloud.receiver.context import Context
from cloud.receiver.limits import check_declared_size, read_body
from cloud.storage.registry import EnrollRequest
from wire.digest import verify_content_digest
from wire.enrollment import parse_token, rotate_pop_message
from wire.errors import BodyError, SignatureError, TokenFormatError
from wire.http import (
    ENROLL_PATH,
    JSON_MEDIA_TYPE,
    ROTATE_PATH,
    Enrolled,
    Rotated,
)
from wire.http import EnrollRequest as EnrollBody
from wire.http import RotateRequest as RotateBody
from wire.jsonbody import decode_json
from wire.keys import b64url_decode, b64url_encode, key_id, public_key_from_raw
from wire.models import MAX_NAME_LEN
from wire.signatures import ENROLL_TAG, verify_request

log = logging.getLogger("cloud.receiver.enroll")
JSON = JSON_MEDIA_TYPE
T = TypeVar("T")


def valid_device_id(device_id: str) -> bool:
    return 0 < len(device_id) <= MAX_NAME_LEN and device_id.isprintable()


def decode_body(raw: bytes, kind: type[T]) -> T:
    """The one way a JSON request body is read (`wire.jsonbody`): 400 naming the field."""
    try:
        return decode_json(raw, kind)
    except BodyError as exc:
        raise _bad(str(exc)) from exc


def _bad(message: str) -> RejectedError:
    return RejectedError(400, responses.bad_request(message), reason=message)


def _refused(reason: str) -> RejectedError:
    return RejectedError(401, responses.ENROLLMENT_REFUSED, reason=reason)


class EnrollHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def _json_body(self, request: Request, kind: type[T]) -> tuple[T, bytes]:
        limits = self.ctx.config.limits
        body = await read_body(request, limits.max_json_bytes, timeout_s=limits.body_timeout_s)
        return decode_body(body, kind), body

    async def enroll(self, request: Request) -> Response:
        ctx = self.ctx
        check_declared_size(request, ctx.config.limits.max_json_bytes)
        require_content_type(request, JSON)
        ctx.address_limiter.check(f"enroll {self._client(request)}", reason="enroll rate")
        body, raw = await self._json_body(request, EnrollBody)
        if not valid_device_id(body.device_id):
            raise _bad("device_id must be 1-128 printable characters")
        try:
            public_key = public_key_from_raw(b64url_decode(body.public_key))
        except SignatureError as exc:
            raise _bad("public_key must be a base64url Ed25519 key") from exc
        try:
            parsed = parse_signature_headers(request)
            headers = {
                name: ", ".join(request.headers.getlist(name))
                for name in ("content-type", "content-digest", "content-encoding")
                if name in request.headers
            }
            verify_request(
                parsed,
                public_key,
                "POST",
                target_uri(ctx.config.public_url, request),
                headers,
                expect_tag=ENROLL_TAG,
            )
            verify_content_digest(headers.get("content-digest", ""), raw)
            token = parse_token(body.token)
        except (SignatureError, TokenFormatError) as exc:
            raise _refused(f"enroll: {exc}") from exc
        keyid = key_id(public_key)
        head = await ctx.store.enroll(
            EnrollRequest(
                token_id=token.token_id,
                token_hash=token.token_hash,
                device_id=body.device_id,
                keyid=keyid,
                public_key=b64url_decode(body.public_key),
                now_ms=ctx.now_ms(),
            ),
            max_failures=ctx.config.max_enroll_failures,
        )
        if head is None:
            raise _refused(f"enroll: token {token.token_id} refused for {body.device_id!r}")
        ctx.key_records.invalidate()
        log.info("device %r enrolled key %s", body.device_id, keyid)
        enrolled = Enrolled(
            device_id=head.device_id,
            keyid=keyid,
            head_seq=head.seq,
            head_digest=b64url_encode(head.digest),
            server_time_ms=ctx.now_ms(),
            config_key=(
                "" if ctx.config.config_key is None else public_config_key(ctx.config.config_key)
            ),
        )
        return responses.json_response(201, enrolled)

    async def rotate(self, request: Request) -> Response:
        ctx = self.ctx
        check_declared_size(request, ctx.config.limits.max_json_bytes)
        require_content_type(request, JSON)
        ctx.address_limiter.check(f"rotate {self._client(request)}", reason="rotate rate")
        key, _, headers = await authenticate_device(
            request, ctx.key_records, ctx.keys, public_url=ctx.config.public_url, now_ms=ctx.now_ms
        )
        body, raw = await self._json_body(request, RotateBody)
        check_digest(headers, raw)
        try:
            new_raw = b64url_decode(body.new_public_key)
            new_key = public_key_from_raw(new_raw)
            pop = b64url_decode(body.pop)
        except SignatureError as exc:
            raise _bad("new_public_key and pop must be base64url") from exc
        new_keyid = key_id(new_key)
        try:
            new_key.verify(pop, rotate_pop_message(key.device_id, key.keyid, new_keyid))
        except InvalidSignature as exc:
            raise _bad("pop does not verify with new_public_key") from exc
        result = await ctx.store.rotate_key(
            key.device_id,
            key.keyid,
            new_keyid,
            new_raw,
            now_ms=ctx.now_ms(),
            overlap_ms=ctx.config.key_overlap_ms,
        )
        if result is None:
            raise RejectedError(
                403,
                responses.ROTATION_REFUSED,
                reason=f"rotate {key.keyid} -> {new_keyid} refused",
            )
        ctx.key_records.invalidate()
        log.info("device %r rotated key %s -> %s", key.device_id, key.keyid, new_keyid)
        rotated = Rotated(
            keyid=result.keyid, old_keyid=result.old_keyid, old_not_after_ms=result.old_not_after_ms
        )
        return responses.json_response(200, rotated)


def routes(ctx: Context) -> list[Route]:
    h = EnrollHandlers(ctx)
    return [
        Route(ENROLL_PATH, ctx.endpoint("enroll", h.enroll), methods=["POST"]),
        Route(ROTATE_PATH, ctx.endpoint("rotate", h.rotate), methods=["POST"]),
    ]
