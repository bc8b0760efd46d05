"""Remote configuration: what the cloud signs when it hands a gateway a config, and the bodies of
the admin endpoints that push one. Pure: bytes and keys in, bytes and verdicts out.

The cloud holds a config-signing key (Ed25519, its own 0600 file, never a device key); a gateway
learns the public half at enrolment (`Enrolled.config_key`) and pins it beside its device key.
A signed config is four facts and the body, signed together:

    message = MessagePack [ "tierless-config-v1", device_id, version, sha256, body ]

(`config_message`: an array, so no field can run into the next), where `version` is the
device's config version number (1, 2, 3, ... per device: the order the gateway enforces),
`sha256` the lowercase hex SHA-256 of `body`, and `body` the UTF-8 TOML text. The gateway accepts
a signed config only if the signature verifies under the pinned key, the device id is its own,
the digest matches the body, and the version is newer than the one in force (`verify_config`):
an unsigned, corrupted, replayed or other-device config is refused, and the running one stays.

What a pushed config may hold: every section of `agent.toml` except `[device]`, `[cloud]` and
`[buffer]`, the gateway's identity, its way home and its data, which stay in the gateway's own
file so that a push can never cut a gateway off or move its buffer; and no secret
(`secret_problems`): no key, password or token, only the names of files that hold them
(`*_file`), which stay on the gateway.

Invariants: `verify_config(key, sign_config(k, d, v, b), device_id=d, newer_than=v - 1)` returns
`b` when `key` is `k`'s public half; any other key, device, digest, version not above
`newer_than`, or changed byte is `RemoteConfigError`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wire.errors import RemoteConfigError, SignatureError
from wire.keys import b64url_decode, b64url_encode

CONFIG_PATH = "/v1/config"  # a gateway fetches its desired config (signed with its device key)
ADMIN_CONFIG_PATH = "/v1/admin/config"  # POST: push (admin token)
ADMIN_CONFIG_STATUS_PATH = "/v1/admin/config/status"  # GET: every gateway, desired and running
CONFIG_CONTEXT = "tierless-config-v1"
MAX_CONFIG_BYTES = 64 * 1024
LOCAL_SECTIONS = ("device", "cloud", "buffer")  # never pushed: identity, way home, its data
_SECRET_NAME = re.compile(r"password|passphrase|secret|token|private|credential|api_?key", re.I)
_SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\btle1\.[A-Za-z0-9_-]{8,}")
_encoder = msgspec.msgpack.Encoder()


class SignedConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A config for one gateway as the cloud serves it (`GET /v1/config`)."""

    device_id: str
    version: int
    sha256: str
    body: str
    signature: str  # base64url Ed25519 signature over `config_message`


class ConfigPush(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/admin/config`: a config for one device or for every device matching a tag
    (`site=plant-1`: devices with a series carrying that tag). Exactly one of the two."""

    config: str
    device: str | None = None
    tag: str | None = None


class PushedTarget(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    version: int


class ConfigPushed(msgspec.Struct, frozen=True, kw_only=True):
    """`201` to a push: the digest of the body and the version each targeted device gets."""

    sha256: str
    targets: list[PushedTarget]


class ConfigRefused(msgspec.Struct, frozen=True, kw_only=True):
    """`400` to a push the checker refuses: every problem, one line each."""

    error: str
    message: str
    problems: list[str]


class ConfigState(msgspec.Struct, frozen=True, kw_only=True):
    """Where one gateway stands: the config pushed to it (desired) and what it runs."""

    device_id: str
    desired_version: int | None
    desired_sha256: str | None
    pushed_ms: int | None
    pushed_by: str | None
    running: str | None  # the config version in its latest health report
    last_result: str | None  # its latest report's word on the last apply, when it sent one


class ConfigStatusList(msgspec.Struct, frozen=True, kw_only=True):
    devices: list[ConfigState]


def config_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def config_message(device_id: str, version: int, sha256: str, body: bytes) -> bytes:
    """The exact bytes the cloud signs (module docstring)."""
    return _encoder.encode([CONFIG_CONTEXT, device_id, version, sha256, body])


def sign_config(key: Ed25519PrivateKey, device_id: str, version: int, body: bytes) -> SignedConfig:
    if version < 1:
        raise RemoteConfigError(f"config version {version} is not positive")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteConfigError("a config is UTF-8 text") from exc
    digest = config_sha256(body)
    signature = key.sign(config_message(device_id, version, digest, body))
    return SignedConfig(
        device_id=device_id,
        version=version,
        sha256=digest,
        body=text,
        signature=b64url_encode(signature),
    )


def verify_config(
    key: Ed25519PublicKey, signed: SignedConfig, *, device_id: str, newer_than: int
) -> bytes:
    """The body of a signed config this gateway may apply; RemoteConfigError saying why not."""
    body = signed.body.encode("utf-8")
    try:
        signature = b64url_decode(signed.signature)
    except SignatureError as exc:
        raise RemoteConfigError("config signature is not base64url") from exc
    try:
        key.verify(signature, config_message(signed.device_id, signed.version, signed.sha256, body))
    except InvalidSignature as exc:
        raise RemoteConfigError("config signature does not verify under the pinned key") from exc
    if config_sha256(body) != signed.sha256:  # signed, but the body is not the one described
        raise RemoteConfigError("config body does not match its sha256")
    if signed.device_id != device_id:
        raise RemoteConfigError(f"config is for device {signed.device_id!r}, not this one")
    if signed.version <= newer_than:
        raise RemoteConfigError(
            f"config version {signed.version} is not newer than {newer_than} (in force)"
        )
    return body


def secret_problems(raw: dict[str, Any], path: str = "") -> list[str]:
    """Why a parsed config may not travel: a local section, or a key or value that looks like a
    secret. One line each, naming the key path; never the value."""
    problems: list[str] = []
    if not path:
        problems += [
            f"{name}: stays on the gateway; a pushed config may not hold [{name}]"
            for name in LOCAL_SECTIONS
            if name in raw
        ]
    for name, value in raw.items():
        where = f"{path}.{name}" if path else str(name)
        if isinstance(value, dict):
            problems += secret_problems(value, where)
            continue
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            at = f"{where}[{i}]" if isinstance(value, list) else where
            if isinstance(item, dict):
                problems += secret_problems(item, at)
            elif _SECRET_NAME.search(str(name)) and not str(name).endswith("_file"):
                problems.append(f"{at}: looks like a secret; name a file on the gateway instead")
            elif isinstance(item, str) and _SECRET_VALUE.search(item):
                problems.append(f"{at}: holds a key or token; secrets never travel in a config")
    return problems
