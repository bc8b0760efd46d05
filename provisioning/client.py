"""The only module of edgectl that speaks HTTP: the receiver's admin API and device endpoints.

`Receiver` owns one `hostio.signedclient.SyncSignedClient` (TLS verified against `ca_file`, else
the system store; no redirects, since a redirect would change the signed @target-uri; proxies
and certificate settings from the environment are ignored, like the agent), the signed-request
client the agent uses too. Answers are decoded into the structs of `wire.http` and `wire.admin`.
Its exceptions stop here:

    connect failure, DNS, timeout         -> UnreachableError
    certificate / handshake failure       -> TlsError
    an exchange that broke off otherwise  -> ReceiverError
    401 on an admin call                  -> UnauthorizedError
    401 enrollment_refused                -> TokenRefusedError
    404                                   -> NotFoundError
    403, 409                              -> RefusedError (the receiver's message)
    400                                   -> LocalError (our request was not acceptable)
    429, 5xx, a body that is not the JSON we expect
                                          -> ReceiverError

The admin token goes only into the Authorization header; it is never part of a message.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hostio import errors as host
from hostio import signedclient
from hostio.errors import CaBundleError, ExchangeError
from hostio.loopback import is_loopback
from hostio.signedclient import Reply, SyncSignedClient
from provisioning.errors import (
    ConfigRefusedError,
    LocalError,
    NotFoundError,
    ProvisioningError,
    ReceiverError,
    RefusedError,
    TlsError,
    TokenRefusedError,
    UnauthorizedError,
    UnreachableError,
)
from wire.admin import (
    DeviceKeysRevoked,
    DeviceList,
    DeviceRecord,
    DeviceStatusChanged,
    KeyRevoked,
    TokenIssued,
    TokenRequest,
)
from wire.enrollment import rotate_pop_message
from wire.http import (
    ADMIN_DEVICES_PATH,
    ADMIN_TOKENS_PATH,
    CHAIN_HEAD_PATH,
    ENROLL_PATH,
    HEALTH_PATH,
    JSON_MEDIA_TYPE,
    ROTATE_PATH,
    ChainHead,
    Enrolled,
    EnrollRequest,
    ErrorBody,
    Health,
    Rotated,
    RotateRequest,
    admin_device_path,
    admin_key_revoke_path,
)
from wire.keys import b64url_encode, key_id, public_key_to_raw
from wire.remoteconfig import (
    ADMIN_CONFIG_PATH,
    ADMIN_CONFIG_STATUS_PATH,
    ConfigPush,
    ConfigPushed,
    ConfigRefused,
    ConfigState,
    ConfigStatusList,
)
from wire.signatures import ENROLL_TAG, TAG

JSON = JSON_MEDIA_TYPE
DEFAULT_TIMEOUT_S = 15.0
T = TypeVar("T")


def normalise_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash; LocalError otherwise.

    Plain http is accepted only to a loopback host unless `allow_insecure_http`, the rule the
    agent applies to the same URL.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise LocalError(f"receiver URL {url!r} is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise LocalError(f"receiver URL {url!r}: expected https://HOST[:PORT]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise LocalError("receiver URL: no credentials, query or fragment allowed")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(host):
        raise LocalError(
            f"receiver URL {url!r}: plain http to a non-loopback host is refused; use https "
            "(or --allow-insecure-http behind a TLS-terminating proxy on a trusted link)"
        )
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Timed:
    """An answer's receiver clock against ours (for `doctor`); `head_seq` for a chain head."""

    server_time_ms: int | None
    local_mid_ms: int  # our clock halfway through the exchange
    head_seq: int | None = None


class Receiver:
    """One receiver at `base_url`; use as a context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._now_ms = now_ms
        try:
            client = signedclient.sync_http_client(
                self.base_url, ca_file=ca_file, timeout_s=timeout_s, transport=transport
            )
        except CaBundleError as exc:
            raise LocalError(f"cannot load the CA bundle '{ca_file}': {exc.reason}") from exc
        self._client = SyncSignedClient(client, base_url=self.base_url, now_ms=now_ms)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    # -- the one place requests are sent --------------------------------------------------

    def request(
        self, method: str, path: str, *, content: bytes = b"", headers: Mapping[str, str]
    ) -> Reply:
        try:
            return self._client.request(method, path, content, headers)
        except ExchangeError as exc:
            raise _translate(exc, self.base_url) from exc

    def _signed(
        self, key: Ed25519PrivateKey, method: str, path: str, body: bytes, *, tag: str
    ) -> Reply:
        try:
            return self._client.signed(key, method, path, body, {"content-type": JSON}, tag=tag)
        except ExchangeError as exc:
            raise _translate(exc, self.base_url) from exc

    # -- unauthenticated ------------------------------------------------------------------

    def health(self) -> Timed:
        """GET /healthz; the receiver's clock from its Date header (1 s resolution)."""
        sent = self._now_ms()
        reply = self.request("GET", HEALTH_PATH, headers={})
        mid = (sent + self._now_ms()) // 2
        _expect(reply, 200, "health check", Health)
        return Timed(_date_ms(reply.headers.get("date")), mid)

    # -- device endpoints (signed) --------------------------------------------------------

    def enroll(self, key: Ed25519PrivateKey, token: str, device_id: str) -> Enrolled:
        """POST /v1/enroll signed by the new key (the proof of possession)."""
        public_key = b64url_encode(public_key_to_raw(key.public_key()))
        body = msgspec.json.encode(
            EnrollRequest(token=token, device_id=device_id, public_key=public_key)
        )
        reply = self._signed(key, "POST", ENROLL_PATH, body, tag=ENROLL_TAG)
        if reply.status == 401:
            raise TokenRefusedError(
                "the receiver refused the enrolment token: it is unknown, already used, "
                "revoked or altered; ask the operator for a new one (edgectl token create)"
            )
        return _expect(reply, 201, "enrolment", Enrolled)

    def rotate(self, current: Ed25519PrivateKey, new: Ed25519PrivateKey, device_id: str) -> Rotated:
        """POST /v1/keys/rotate signed by `current`, with `new`'s proof of possession."""
        old_keyid, new_keyid = key_id(current.public_key()), key_id(new.public_key())
        pop = new.sign(rotate_pop_message(device_id, old_keyid, new_keyid))
        body = msgspec.json.encode(
            RotateRequest(
                new_public_key=b64url_encode(public_key_to_raw(new.public_key())),
                pop=b64url_encode(pop),
            )
        )
        reply = self._signed(current, "POST", ROTATE_PATH, body, tag=TAG)
        if reply.status == 401:
            raise RefusedError(
                f"the receiver does not know the current key {old_keyid} (enrolled elsewhere, "
                "or the receiver's database was replaced): re-enrol this gateway"
            )
        return _expect(reply, 200, "key rotation", Rotated)

    def chain_head(self, key: Ed25519PrivateKey) -> Timed:
        """Signed GET /v1/chain/head: proves the key is accepted; the receiver's time."""
        sent = self._now_ms()
        reply = self._signed(key, "GET", CHAIN_HEAD_PATH, b"", tag=TAG)
        mid = (sent + self._now_ms()) // 2
        if reply.status == 401:
            raise RefusedError(
                f"the receiver does not know key {key_id(key.public_key())} "
                "(not enrolled there, or enrolled on another receiver)"
            )
        head = _expect(reply, 200, "chain head", ChainHead)
        return Timed(head.server_time_ms, mid, head.seq)


class AdminApi:
    """The operator endpoints under /v1/admin/, with the admin bearer token."""

    def __init__(self, receiver: Receiver, admin_token: str) -> None:
        self._r = receiver
        self._headers = {"authorization": f"Bearer {admin_token}", "content-type": JSON}

    def _call(
        self,
        method: str,
        path: str,
        kind: type[T],
        body: msgspec.Struct | None = None,
        *,
        expect: int = 200,
    ) -> T:
        content = b"" if body is None else msgspec.json.encode(body)
        reply = self._r.request(method, path, content=content, headers=self._headers)
        self._check_token(reply)
        return _expect(reply, expect, path, kind)

    def _check_token(self, reply: Reply) -> None:
        if reply.status == 401:
            raise UnauthorizedError(
                f"the admin token was refused by {self._r.base_url} (check "
                "--admin-token-file, TIERLESS_ADMIN_TOKEN_FILE or TIERLESS_ADMIN_TOKEN)"
            )

    def create_token(self, device_id: str, ttl_s: int) -> TokenIssued:
        body = TokenRequest(device_id=device_id, ttl_s=ttl_s)
        return self._call("POST", ADMIN_TOKENS_PATH, TokenIssued, body, expect=201)

    def list_devices(self) -> list[DeviceRecord]:
        return self._call("GET", ADMIN_DEVICES_PATH, DeviceList).devices

    def device(self, device_id: str) -> DeviceRecord:
        return self._call("GET", admin_device_path(device_id), DeviceRecord)

    def set_status(self, device_id: str, action: str) -> DeviceStatusChanged:
        return self._call("POST", admin_device_path(device_id, action), DeviceStatusChanged)

    def revoke_device(self, device_id: str) -> DeviceKeysRevoked:
        return self._call("POST", admin_device_path(device_id, "revoke"), DeviceKeysRevoked)

    def revoke_key(self, keyid: str) -> KeyRevoked:
        return self._call("POST", admin_key_revoke_path(keyid), KeyRevoked)

    def push_config(self, push: ConfigPush) -> ConfigPushed:
        """POST /v1/admin/config; ConfigRefusedError with the checker's problems on a 400."""
        content = msgspec.json.encode(push)
        reply = self._r.request("POST", ADMIN_CONFIG_PATH, content=content, headers=self._headers)
        if reply.status == 400:
            try:
                refused = msgspec.json.decode(reply.content, type=ConfigRefused)
            except msgspec.DecodeError:
                pass  # a plain 400 (a bad target): _expect says it
            else:
                raise ConfigRefusedError(refused.problems)
        self._check_token(reply)
        return _expect(reply, 201, ADMIN_CONFIG_PATH, ConfigPushed)

    def config_status(self) -> list[ConfigState]:
        return self._call("GET", ADMIN_CONFIG_STATUS_PATH, ConfigStatusList).devices


def _expect(reply: Reply, status: int, what: str, kind: type[T]) -> T:
    """The answer decoded as `kind` when it has `status`; else the error it means."""
    code = reply.status
    if code == status:
        try:
            return msgspec.json.decode(reply.content, type=kind)
        except msgspec.DecodeError as exc:
            raise ReceiverError(f"the {what} answer is malformed") from exc
    try:
        body = msgspec.json.decode(reply.content, type=ErrorBody)
    except msgspec.DecodeError:
        body = ErrorBody(error="")
    message = body.message
    detail = f": {message}" if message is not None and message.isprintable() else ""
    error = body.error
    if code == 404:
        raise NotFoundError(f"{what}: not found on the receiver")
    if code in (403, 409):
        raise RefusedError(f"{what}: the receiver refused ({code} {error}{detail})")
    if code == 400:
        raise LocalError(f"{what}: the receiver found the request invalid{detail}")
    if code == 429:
        wait = reply.headers.get("retry-after", "a while")
        raise ReceiverError(f"{what}: rate limited by the receiver; try again in {wait} s")
    raise ReceiverError(f"{what}: unexpected answer {code} {error}".rstrip())


def _translate(exc: ExchangeError, base_url: str) -> ProvisioningError:
    if isinstance(exc, host.CertificateError):
        return TlsError(
            f"TLS to {base_url} failed: {exc.detail}; "
            "pass --ca-file with the CA bundle that signed the receiver's certificate "
            "(and check this machine's clock)"
        )
    if isinstance(exc, host.TlsError):
        return TlsError(f"TLS to {base_url} failed: {exc.detail}")
    if isinstance(exc, host.ExchangeTimeoutError):
        return UnreachableError(f"cannot reach the receiver at {base_url}: timed out")
    if isinstance(exc, host.UnreachableError):
        return UnreachableError(f"cannot reach the receiver at {base_url}: {exc.detail}")
    return ReceiverError(f"request to {base_url} failed: {exc.detail}")


def _date_ms(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return None
