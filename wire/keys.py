"""Ed25519 device keys: raw and PEM forms, strict base64url, and RFC 7638 key ids.

A device is named on the wire by `key_id(public_key)`: the RFC 7638 SHA-256 thumbprint of the JWK
`{"crv":"Ed25519","kty":"OKP","x":<b64url raw key>}`. It is the `keyid` of every signature and
the registry's lookup key, so it must be computed identically on both sides.

Invariants:
- No I/O: PEM bytes in and out. Agent and provisioning own the 0600 key files.
- base64url is strict (no padding, URL-safe alphabet, unused bits zero): one value, one spelling.
- Every failure is `SignatureError`; messages never include key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from wire.errors import SignatureError

ED25519_RAW_LENGTH = 32
_B64URL = re.compile(r"[A-Za-z0-9_-]*")

# RFC 7638 section 3.2: the required members per key type, already in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
}


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; SignatureError on padding, a foreign alphabet or spare bits."""
    if not isinstance(text, str) or _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise SignatureError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - excluded by the checks above
        raise SignatureError("not unpadded base64url") from exc
    if b64url_encode(raw) != text:
        raise SignatureError("non-canonical base64url (unused bits set)")
    return raw


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url; members beyond the required ignored.

    Supports kty OKP, RSA and EC; anything else, or a missing or non-string member, is
    SignatureError.
    """
    kty = jwk.get("kty")
    names = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if names is None:
        raise SignatureError(f"JWK kty {kty!r} not supported for a thumbprint")
    required = {}
    for name in names:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise SignatureError(f"JWK member {name!r} missing or not a non-empty string")
        required[name] = value
    # Minimal JSON: sorted member names, no whitespace, UTF-8 (RFC 7638 section 3.3).
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    try:
        encoded = canonical.encode("utf-8")
    except UnicodeError as exc:
        raise SignatureError("JWK member is not valid Unicode") from exc
    return b64url_encode(hashlib.sha256(encoded).digest())


def public_key_to_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{type(key).__name__} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes; anything else is SignatureError."""
    if not isinstance(raw, bytes) or len(raw) != ED25519_RAW_LENGTH:
        raise SignatureError("an Ed25519 public key is exactly 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError("invalid Ed25519 public key") from exc


def key_id(public_key: Ed25519PublicKey) -> str:
    """The device key id: RFC 7638 thumbprint of the key's OKP JWK."""
    x = b64url_encode(public_key_to_raw(public_key))
    return jwk_thumbprint({"crv": "Ed25519", "kty": "OKP", "x": x})


def load_private_key_pem(data: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from unencrypted PKCS#8 PEM; other keys or garbage: SignatureError."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The message of exc is not forwarded: parsers may quote what they failed on.
        raise SignatureError(f"not an unencrypted PEM private key ({type(exc).__name__})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"PEM holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of an Ed25519 private key (the caller stores it 0600)."""
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{type(key).__name__} is not an Ed25519 private key")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
