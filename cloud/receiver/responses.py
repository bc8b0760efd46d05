"""Every response body the receiver sends, in one place (docs/protocol.md section 5).

All responses are JSON with `Cache-Control: no-store` and announce the content-codings we read
(`Accept-Encoding: zstd, gzip`). Error bodies are fixed: no exception text reaches a client, and
every authentication failure is the very same bytes (`UNAUTHORIZED_BYTES`).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from starlette.responses import Response

from wire.compression import available_encodings

ACCEPT_ENCODING = ", ".join(available_encodings())
BASE_HEADERS = {"cache-control": "no-store", "accept-encoding": ACCEPT_ENCODING}

UNAUTHORIZED = {"error": "unauthorized", "message": "request not authenticated"}
UNAUTHORIZED_BYTES = msgspec.json.encode(UNAUTHORIZED)
UNAUTHORIZED_HEADERS = {"www-authenticate": 'Signature realm="tierless"'}
ENROLLMENT_REFUSED = {"error": "enrollment_refused"}
FORBIDDEN = {"error": "forbidden", "message": "key revoked or expired, or device disabled"}
FORBIDDEN_DEVICE = {"error": "forbidden", "message": "the batch names another device"}
TOO_LARGE = {"error": "too_large"}
UNSUPPORTED = {"error": "unsupported_media_type"}
RATE_LIMITED = {"error": "rate_limited"}
UNAVAILABLE = {"error": "unavailable"}
HEAD_TIMEOUT = {"error": "timeout", "message": "request head not received in time"}
INTERNAL = {"error": "internal"}
NOT_FOUND = {"error": "not_found"}
OPERATOR_UNAUTHORIZED = {"error": "unauthorized", "message": "bearer token required"}


def bad_request(message: str) -> dict[str, str]:
    """A 400 body; `message` is ours (a fixed phrase or a wire validation path), never raw input."""
    return {"error": "bad_request", "message": message}


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


def json_response(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    content = UNAUTHORIZED_BYTES if body is UNAUTHORIZED else msgspec.json.encode(body)
    return _JsonResponse(content, status, headers)
