"""RFC 9530 Content-Digest over the body exactly as sent.

Only sha-256 is trusted. Other algorithms are ignored when a sha-256 member is present and refused
when it is not; the comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from wire.errors import SignatureError
from wire.structured import Item, parse_dictionary

CONTENT_DIGEST_MAX_LENGTH = 1024
_CONTENT_DIGEST_MAX_MEMBERS = 8
_SHA256_LENGTH = 32


def content_digest(body: bytes) -> str:
    """The Content-Digest value for `body` (the bytes exactly as sent): `sha-256=:<b64>:`."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def verify_content_digest(header: str, body: bytes) -> None:
    """Check a Content-Digest field against `body`; SignatureError if malformed or different.

    A sha-256 member is required. Other members (sha-512, legacy ones) are ignored beside it; a
    field with no sha-256 member is refused, so a peer cannot steer us to an algorithm we do not
    check.
    """
    members = dict(
        parse_dictionary(
            header,
            field="content-digest",
            max_length=CONTENT_DIGEST_MAX_LENGTH,
            max_members=_CONTENT_DIGEST_MAX_MEMBERS,
        )
    )
    member = members.get("sha-256")
    if member is None:
        names = ", ".join(members) or "none"
        raise SignatureError(f"content-digest: no sha-256 member (found: {names})")
    if not isinstance(member, Item) or type(member.value) is not bytes or member.params:
        raise SignatureError("content-digest: sha-256 member is not a bare sf-binary")
    if len(member.value) != _SHA256_LENGTH:
        raise SignatureError(f"content-digest: sha-256 value is {len(member.value)} bytes, not 32")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise SignatureError("content-digest: body is not bytes")
    if not hmac.compare_digest(member.value, hashlib.sha256(body).digest()):
        raise SignatureError("content-digest: sha-256 does not match the body")
