"""Enrolment tokens and operator bearer tokens. Pure: randomness and time are passed in or local.

Enrolment token format (ASCII, one line, so it can be typed, pasted or put in a QR code):

    tle1.<b64url(device_id)>.<expires_ms>.<token_id>.<b64url(32 random bytes)>

The device id and expiry are readable so the provisioning CLI can say "expired" or "for another
device" locally; the receiver trusts none of it. It stores only SHA-256 of the whole string, finds
the row by `token_id`, compares hashes in constant time, and answers every refusal identically.

Operator tokens (admin, read) are compared by SHA-256 digest with `hmac.compare_digest`, so
neither the content nor the length of the expected token shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cloud.storage.base import TokenRecord
from wire.enrollment import format_token, token_hash
from wire.keys import b64url_encode


def issue_token(device_id: str, *, now_ms: int, ttl_ms: int) -> tuple[str, TokenRecord]:
    """A new token string (shown once) and the record to store (its hash only)."""
    expires_ms = now_ms + ttl_ms
    token_id = secrets.token_hex(8)
    token = format_token(device_id, expires_ms, token_id, secrets.token_bytes(32))
    record = TokenRecord(token_id, token_hash(token), device_id, now_ms, expires_ms)
    return token, record


def new_operator_token() -> str:
    """A bearer token for the admin or read API: 32 random bytes, base64url."""
    return b64url_encode(secrets.token_bytes(32))


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
