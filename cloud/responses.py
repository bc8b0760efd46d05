"""Every response body the receiver sends goes out here (docs/protocol.md section 5).

The bodies are the structs of the HTTP contract (`wire.http`, `wire.admin`, `wire.query`); this
module holds the fixed refusals and the one encoder. All responses are JSON with
`Cache-Control: no-store` and announce the content-codings we read (`Accept-Encoding: zstd,
gzip`). Error bodies are fixed: no exception text reaches a client, and every authentication
failure is the very same bytes (`UNAUTHORIZED_BYTES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from wire.compression import available_encodings
from wire.http import ErrorBody, ErrorCode

ACCEPT_ENCODING = ", ".join(available_encodings())
BASE_HEADERS = {"cache-control": "no-store", "accept-encoding": ACCEPT_ENCODING}

UNAUTHORIZED = ErrorBody(error=ErrorCode.UNAUTHORIZED, message="request not authenticated")
UNAUTHORIZED_BYTES = msgspec.json.encode(UNAUTHORIZED)
UNAUTHORIZED_HEADERS = {"www-authenticate": 'Signature realm="tierless"'}
ENROLLMENT_REFUSED = ErrorBody(error=ErrorCode.ENROLLMENT_REFUSED)
FORBIDDEN = ErrorBody(
    error=ErrorCode.FORBIDDEN, message="key revoked or expired, or device disabled"
)
FORBIDDEN_DEVICE = ErrorBody(error=ErrorCode.FORBIDDEN, message="the batch names another device")
ROTATION_REFUSED = ErrorBody(error=ErrorCode.FORBIDDEN, message="rotation refused")
TOO_LARGE = ErrorBody(error=ErrorCode.TOO_LARGE)
UNSUPPORTED = ErrorBody(error=ErrorCode.UNSUPPORTED_MEDIA_TYPE)
RATE_LIMITED = ErrorBody(error=ErrorCode.RATE_LIMITED)
UNAVAILABLE = ErrorBody(error=ErrorCode.UNAVAILABLE)
HEAD_TIMEOUT = ErrorBody(error=ErrorCode.TIMEOUT, message="request head not received in time")
INTERNAL = ErrorBody(error=ErrorCode.INTERNAL)
NOT_FOUND = ErrorBody(error=ErrorCode.NOT_FOUND, message="no such path")
METHOD_NOT_ALLOWED = ErrorBody(
    error=ErrorCode.METHOD_NOT_ALLOWED, message="this path does not take that method"
)
OPERATOR_UNAUTHORIZED = ErrorBody(error=ErrorCode.UNAUTHORIZED, message="bearer token required")


def bad_request(message: str) -> ErrorBody:
    """A 400 body; `message` is ours (a fixed phrase or a wire validation path), never raw input."""
    return ErrorBody(error=ErrorCode.BAD_REQUEST, message=message)


def not_found(what: str) -> ErrorBody:
    """A 404 body naming what was not found ("device", "key", "series"): ours, never input."""
    return ErrorBody(error=ErrorCode.NOT_FOUND, message=f"no such {what}")


def conflict(message: str) -> ErrorBody:
    """A 409 body of the admin API; `message` is ours."""
    return ErrorBody(error=ErrorCode.CONFLICT, message=message)


_BASE_RAW = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in BASE_HEADERS.items()]
_JSON_TYPE = (b"content-type", b"application/json")


class _JsonResponse(Response):
    """Starlette's Response with the common case's header list built from pre-encoded parts
    (every batch answer comes through here); extra headers take Starlette's generic path."""

    media_type = "application/json"

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers:
            super().init_headers({**BASE_HEADERS, **headers})
            return
        length = (b"content-length", str(len(self.body)).encode("latin-1"))
        self.raw_headers = [*_BASE_RAW, length, _JSON_TYPE]


def json_response(
    status: int,
    body: msgspec.Struct | Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> Response:
    """`body` as JSON, with the common headers: a struct of the HTTP contract, or (the one
    mapping) the OpenAPI document."""
    content = UNAUTHORIZED_BYTES if body is UNAUTHORIZED else msgspec.json.encode(body)
    return _JsonResponse(content, status, headers)
