"""Operator bearer tokens (admin, read, viewer): checked the same way by the receiver and the apps.

Tokens are compared by SHA-256 digest with `hmac.compare_digest`, so neither the content nor the
length of the expected token shows in the timing. A refusal is one fixed 401 body.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from cloud import responses
from cloud.errors import RejectedError


class BearerCheck:
    """Accepts any of a fixed set of bearer tokens; constant-time per candidate."""

    def __init__(self, *tokens: str) -> None:
        self._digests = [hashlib.sha256(t.encode("utf-8")).digest() for t in tokens if t]

    def merged(self, other: BearerCheck) -> BearerCheck:
        """A check that accepts the tokens of both."""
        both = BearerCheck()
        both._digests = [*self._digests, *other._digests]
        return both

    def accepts(self, authorization: str | None) -> bool:
        if not authorization or not self._digests:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        digest = hashlib.sha256(presented.strip().encode("utf-8", "replace")).digest()
        ok = False
        for expected in self._digests:  # no early exit: every candidate is compared
            ok |= hmac.compare_digest(digest, expected)
        return ok


def require_bearer(request: Request, check: BearerCheck) -> None:
    if not check.accepts(request.headers.get("authorization")):
        raise RejectedError(
            401,
            responses.OPERATOR_UNAUTHORIZED,
            reason="operator token",
            headers={"www-authenticate": 'Bearer realm="tierless"'},
        )
