"""`edgectl enroll`: make this gateway's key, prove possession to the receiver, write the agent's
configuration.

Steps, each safe to repeat after a crash (docs/provisioning.md, "The first gateway"):
1. Judge the token locally first: a string that is not a token, a token for another device id,
   or one past its expiry is refused with its own message before anything is written. (Expiry
   is confirmed against the receiver's clock before refusing, because a gateway without a
   real-time clock may be wrong about today.)
2. Refuse a directory that already holds an enrolled key, unless `replace`.
3. Generate the Ed25519 key here and write it, 0600, to `<key>.enrolling` BEFORE asking: an
   enrolment the receiver accepted must never be left without its key. A run that finds that
   file resumes with it: the receiver answers a repeated enrolment of the same key with the
   same token as the first time (idempotent), so a lost answer costs nothing.
4. POST /v1/enroll signed by the new key (tag tierless-enroll-v1): the proof of possession.
5. Move the key into place (atomically; over the old one only with `replace`), then write the
   CA bundle and `agent.toml` if the directory has none. The private key never leaves the file.
6. Pin the cloud's config-signing public key from the answer (`cloud-config.pub`, replaced on
   every enrolment: a new enrolment is a new trust decision), when the receiver has one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning import agentconfig, secretfiles
from provisioning.client import Receiver, normalise_url
from provisioning.errors import (
    AlreadyEnrolledError,
    LocalError,
    ReceiverError,
    TokenDeviceError,
    TokenExpiredError,
    TokenRefusedError,
)
from wire.enrollment import EnrollmentToken, parse_token
from wire.errors import SignatureError, TokenFormatError
from wire.keys import b64url_decode, key_id, public_key_from_raw
from wire.models import MAX_NAME_LEN

PENDING_SUFFIX = ".enrolling"
EXPIRY_SLACK_MS = 5000
BUNDLE_META = "bundle.json"
BUNDLE_TOKEN = "enrollment.token"  # noqa: S105 - a file name
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Bundle:
    """An install bundle made by `edgectl fleet plan` (see provisioning.fleet)."""

    path: Path
    device_id: str
    cloud_url: str
    token: str
    ca_pem: bytes | None
    agent_toml: str | None


@dataclass(frozen=True, slots=True)
class EnrollPlan:
    directory: Path
    device_id: str
    cloud_url: str
    token: str
    ca_file: str | None = None  # to connect with, and copied into the directory
    ca_pem: bytes | None = None  # the CA bundle's bytes (from --ca-file or the bundle)
    agent_toml: str | None = None  # starting config (from a bundle)
    replace: bool = False
    allow_insecure_http: bool = False
    buffer_path: str = agentconfig.BUFFER_NAME
    owner: tuple[int, int] | None = None  # chown what we write (when run as root)


@dataclass(frozen=True, slots=True)
class EnrollResult:
    device_id: str
    keyid: str
    key_file: Path
    config_file: Path
    config_written: bool


def valid_device_id(device_id: str) -> bool:
    return (
        0 < len(device_id) <= MAX_NAME_LEN
        and device_id.isprintable()
        and device_id == device_id.strip()
    )


def clean_token(text: str) -> str:
    """The token from what a person pasted or a file held: surrounding whitespace removed."""
    return text.strip()


def read_bundle(path: Path) -> Bundle:
    """Load an install bundle directory; LocalError saying what is missing."""
    meta_path = path / BUNDLE_META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        token = clean_token((path / BUNDLE_TOKEN).read_text(encoding="ascii"))
    except FileNotFoundError as exc:
        raise LocalError(
            f"'{path}' is not a complete install bundle ({exc.filename} is missing)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise LocalError(f"install bundle '{path}' cannot be read: {exc}") from exc
    if not isinstance(meta, dict) or not all(
        isinstance(meta.get(k), str) for k in ("device_id", "cloud_url")
    ):
        raise LocalError(f"'{meta_path}' is not an edgectl bundle description")
    ca = path / agentconfig.CA_NAME
    config = path / agentconfig.CONFIG_NAME
    return Bundle(
        path=path,
        device_id=meta["device_id"],
        cloud_url=meta["cloud_url"],
        token=token,
        ca_pem=ca.read_bytes() if ca.exists() else None,
        agent_toml=config.read_text(encoding="utf-8") if config.exists() else None,
    )


def judge_token(token: str, device_id: str, now_ms: int) -> tuple[EnrollmentToken, bool]:
    """The parsed token and whether it looks expired by our clock; TokenRefusedError or
    TokenDeviceError when it cannot be used here at all."""
    try:
        parsed = parse_token(token)
    except TokenFormatError as exc:
        raise TokenRefusedError(
            "that is not an enrolment token (it should start with 'tle1.' and have five "
            "dot-separated parts): it was cut off or altered while copying; copy it again"
        ) from exc
    if parsed.device_id != device_id:
        raise TokenDeviceError(
            f"this token was issued for device {parsed.device_id!r}, not {device_id!r}: use the "
            f"token made for {device_id!r} (edgectl token create --device {device_id})"
        )
    return parsed, now_ms >= parsed.expires_ms


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def enroll(
    plan: EnrollPlan,
    *,
    say: Say,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    transport: httpx.BaseTransport | None = None,
) -> EnrollResult:
    """Run the steps of the module docstring; a ProvisioningError subclass on any refusal."""
    if not valid_device_id(plan.device_id):
        raise LocalError("device id must be 1-128 printable characters without outer spaces")
    url = normalise_url(plan.cloud_url, allow_insecure_http=plan.allow_insecure_http)
    directory = plan.directory
    config_file = directory / agentconfig.CONFIG_NAME
    key_file = directory / agentconfig.KEY_NAME
    if secretfiles.exists(config_file):
        existing = agentconfig.read(config_file)
        if existing.device_id != plan.device_id:
            raise LocalError(
                f"{config_file} is the configuration of device {existing.device_id!r}, not "
                f"{plan.device_id!r}; use another --dir or fix the file"
            )
        if existing.cloud_url.rstrip("/") != url:
            raise LocalError(
                f"{config_file} sends to {existing.cloud_url}, not {url}; change cloud.url "
                "there first (the agent signs for that exact URL)"
            )
        key_file = existing.key_file
    if secretfiles.exists(key_file) and not plan.replace:
        raise AlreadyEnrolledError(
            f"{directory} is already enrolled: key file '{key_file}' exists. To enrol again "
            "with a new key (after a revocation, or onto another receiver), add --replace"
        )
    parsed, looks_expired = judge_token(plan.token, plan.device_id, now_ms())
    with Receiver(url, ca_file=plan.ca_file, transport=transport, now_ms=now_ms) as receiver:
        if looks_expired:
            _confirm_expiry(receiver, parsed, say)
        pending = key_file.with_name(key_file.name + PENDING_SUFFIX)
        key, resumed = _pending_key(pending, plan.owner, say)
        try:
            enrolled = receiver.enroll(key, plan.token, plan.device_id)
        except TokenRefusedError:
            if not resumed:
                raise
            # The key left by an earlier attempt may belong to another token's enrolment;
            # a fresh key with this token is judged on the token alone.
            say("the key from the unfinished attempt was not accepted; trying a new key")
            secretfiles.remove_file(pending)
            key, _ = _pending_key(pending, plan.owner, say)
            enrolled = receiver.enroll(key, plan.token, plan.device_id)
    keyid = key_id(key.public_key())
    _install_key(pending, key_file, replace=plan.replace)
    written = _write_config(plan, url, config_file, key_file)
    if enrolled.config_key:
        _pin_config_key(directory / agentconfig.CONFIG_KEY_NAME, enrolled.config_key)
    if plan.owner is not None:
        pinned = directory / agentconfig.CONFIG_KEY_NAME
        for path in (directory, key_file, config_file, directory / agentconfig.CA_NAME, pinned):
            if path.exists():
                os.chown(path, *plan.owner, follow_symlinks=False)
    say(f"enrolled {enrolled.device_id!r} at {url} with key {keyid}")
    return EnrollResult(plan.device_id, keyid, key_file, config_file, written)


def _pin_config_key(path: Path, config_key: str) -> None:
    try:
        public_key_from_raw(b64url_decode(config_key))
    except SignatureError as exc:
        raise ReceiverError(
            f"the receiver's config-signing key is not an Ed25519 key: {exc}"
        ) from exc
    secretfiles.write_secret_file(path, (config_key + "\n").encode("ascii"), replace=True)


def _confirm_expiry(receiver: Receiver, parsed: EnrollmentToken, say: Say) -> None:
    server_ms = receiver.health().server_time_ms
    # The Date header has whole seconds and requests take time: only a receiver clock well
    # behind the expiry shows that it is our clock that is wrong.
    if server_ms is None or server_ms + EXPIRY_SLACK_MS >= parsed.expires_ms:
        raise TokenExpiredError(
            f"the enrolment token expired at {_utc(parsed.expires_ms)}; ask the operator for "
            f"a new one (edgectl token create --device {parsed.device_id})"
        )
    say(
        "warning: this machine's clock is ahead of the receiver's; the token is still valid "
        "(set the clock: timedatectl)"
    )


def _pending_key(
    pending: Path, owner: tuple[int, int] | None, say: Say
) -> tuple[Ed25519PrivateKey, bool]:
    if secretfiles.exists(pending):
        say(f"resuming an unfinished enrolment with the key in {pending}")
        return secretfiles.load_private_key(pending), True
    key = Ed25519PrivateKey.generate()
    pending.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secretfiles.check_directory(pending.parent)
    secretfiles.write_private_key(pending, key, replace=False)
    if owner is not None:
        os.chown(pending, *owner)
    return key, False


def _install_key(pending: Path, key_file: Path, *, replace: bool) -> None:
    if replace:
        secretfiles.move_into_place(pending, key_file)
        return
    try:
        os.link(pending, key_file, follow_symlinks=False)
    except FileExistsError as exc:
        raise AlreadyEnrolledError(f"key file '{key_file}' appeared while enrolling") from exc
    except OSError as exc:
        raise LocalError(f"cannot install the key as '{key_file}': {exc.strerror}") from exc
    secretfiles.remove_file(pending)


def _write_config(plan: EnrollPlan, url: str, config_file: Path, key_file: Path) -> bool:
    directory = plan.directory
    ca_name: str | None = None
    if plan.ca_pem is not None:
        secretfiles.write_secret_file(directory / agentconfig.CA_NAME, plan.ca_pem, replace=True)
        ca_name = agentconfig.CA_NAME
    if secretfiles.exists(config_file):
        return False
    text = plan.agent_toml or agentconfig.render(
        device_id=plan.device_id,
        cloud_url=url,
        ca_file=ca_name,
        key_file=os.path.relpath(key_file, directory),
        buffer_path=plan.buffer_path,
        allow_insecure_http=plan.allow_insecure_http,
        written_by="edgectl enroll",
    )
    secretfiles.write_secret_file(config_file, text.encode("utf-8"), replace=False)
    return True
