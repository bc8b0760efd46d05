"""Enrolment tokens and operator bearer tokens. Pure: randomness and time are passed in or local.

Enrolment token format (ASCII, one line, so it can be typed, pasted or put in a QR code):

    tle1.<b64url(device_id)>.<expires_ms>.<token_id>.<b64url(32 random bytes)>

The device id and expiry are readable so the provisioning CLI can say "expired" or "for another
device" locally; the receiver trusts none of it. It stores only SHA-256 of the whole string, finds
the row by `token_id`, compares hashes in constant time, and answers every refusal identically.

Operator tokens (admin, read) are made here and checked by `cloud.bearer.BearerCheck`.
"""

from __future__ import annotations

import secrets

from cloud.storage.registry import TokenRecord
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
