"""Enrolment and key rotation: the bytes agent, receiver and `edgectl` must agree on.

Enrolment token (ASCII, one line, so it can be typed, pasted or put in a QR code):

    tle1.<b64url(device_id)>.<expires_ms>.<token_id>.<b64url(32 random bytes)>

- `expires_ms` is 1-15 decimal digits (UTC epoch milliseconds), `token_id` 16 lowercase hex
  digits, the secret exactly 32 bytes; base64url is the strict, unpadded kind of `wire.keys`.
- The device id and expiry are readable so a gateway can say "expired" or "for another device"
  before it asks; the receiver trusts none of it. It keeps only SHA-256 of the whole string
  (`token_hash`), finds the row by `token_id`, and answers every refusal identically.

Rotation proof of possession: the new key signs the ASCII bytes
`tierless-rotate-v1|<device_id>|<old keyid>|<new keyid>` (`rotate_pop_message`), sent as `pop`
in `POST /v1/keys/rotate`, which the current key signs. The endpoints' paths and JSON bodies
are in `wire.http`.

Pure: no I/O, no clock, no randomness (the issuer passes the secret in).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from wire.errors import SignatureError, TokenFormatError
from wire.keys import b64url_decode, b64url_encode

TOKEN_PREFIX = "tle1"  # noqa: S105 - the format tag, not a secret
MAX_TOKEN_LENGTH = 512
TOKEN_SECRET_LENGTH = 32
ROTATE_POP_PREFIX = "tierless-rotate-v1"

_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
_DIGITS = re.compile(r"[0-9]{1,15}")


@dataclass(frozen=True, slots=True)
class EnrollmentToken:
    """The readable parts of a token; `token_hash` is what the receiver stores."""

    device_id: str
    expires_ms: int
    token_id: str
    token_hash: bytes


def token_hash(token: str) -> bytes:
    """SHA-256 of the whole token string (UTF-8)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def format_token(device_id: str, expires_ms: int, token_id: str, secret: bytes) -> str:
    """A token string from its parts; TokenFormatError if a part breaks the format."""
    if _TOKEN_ID.fullmatch(token_id) is None:
        raise TokenFormatError("token_id must be 16 lowercase hex digits")
    if len(secret) != TOKEN_SECRET_LENGTH:
        raise TokenFormatError(f"the secret is {TOKEN_SECRET_LENGTH} bytes")
    if _DIGITS.fullmatch(str(expires_ms)) is None:
        raise TokenFormatError("expires_ms must be 0 to 15 digits")
    token = ".".join(
        (
            TOKEN_PREFIX,
            b64url_encode(device_id.encode("utf-8")),
            str(expires_ms),
            token_id,
            b64url_encode(secret),
        )
    )
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenFormatError("device id too long for a token")
    return token


def parse_token(token: str) -> EnrollmentToken:
    """Split a token into its readable parts; TokenFormatError if it is not one.

    Surrounding whitespace is NOT stripped here: the hash covers the exact string, so callers
    that read a token from a file or a terminal strip it themselves, once.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenFormatError("not an enrolment token")
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != TOKEN_PREFIX:
        raise TokenFormatError("not an enrolment token")
    _, device_b64, expires, token_id, secret = parts
    if _DIGITS.fullmatch(expires) is None or _TOKEN_ID.fullmatch(token_id) is None:
        raise TokenFormatError("not an enrolment token")
    try:
        device_id = b64url_decode(device_b64).decode("utf-8")
        if len(b64url_decode(secret)) != TOKEN_SECRET_LENGTH:
            raise TokenFormatError("not an enrolment token")
    except (SignatureError, UnicodeDecodeError) as exc:
        raise TokenFormatError("not an enrolment token") from exc
    return EnrollmentToken(device_id, int(expires), token_id, token_hash(token))


def rotate_pop_message(device_id: str, old_keyid: str, new_keyid: str) -> bytes:
    """The bytes the new key signs to prove possession during a rotation."""
    return f"{ROTATE_POP_PREFIX}|{device_id}|{old_keyid}|{new_keyid}".encode()
