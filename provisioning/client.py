"""The only module of edgectl that speaks HTTP: the receiver's admin API and device endpoints.

`Receiver` owns one httpx client (TLS verified against `ca_file`, else the system store; no
redirects, since a redirect would change the signed @target-uri; proxies and certificate
settings from the environment are ignored, like the agent). httpx exceptions stop here:

    connect failure, DNS, timeout         -> UnreachableError
    certificate / handshake failure       -> TlsError
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
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hostio.loopback import is_loopback
from provisioning.errors import (
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
from wire.digest import content_digest
from wire.enrollment import CHAIN_HEAD_PATH, ENROLL_PATH, ROTATE_PATH, rotate_pop_message
from wire.keys import b64url_encode, key_id, public_key_to_raw
from wire.signatures import ENROLL_TAG, TAG, sign_request

JSON = "application/json"
DEFAULT_TIMEOUT_S = 15.0


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
class Enrolled:
    device_id: str
    keyid: str
    head_seq: int
    server_time_ms: int | None


@dataclass(frozen=True, slots=True)
class Rotated:
    keyid: str
    old_keyid: str
    old_not_after_ms: int


@dataclass(frozen=True, slots=True)
class Timed:
    """A JSON answer and the receiver's clock against ours (for `doctor`)."""

    payload: dict[str, Any]
    server_time_ms: int | None
    local_mid_ms: int  # our clock halfway through the exchange


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
        verify: ssl.SSLContext | bool = True
        if self.base_url.startswith("https:"):
            try:
                verify = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise LocalError(f"cannot load the CA bundle '{ca_file}': {exc}") from exc
            verify.minimum_version = ssl.TLSVersion.TLSv1_2
        self._client = httpx.Client(
            verify=verify,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    # -- the one place requests are sent --------------------------------------------------

    def request(
        self, method: str, path: str, *, content: bytes = b"", headers: Mapping[str, str]
    ) -> httpx.Response:
        url = self.base_url + path
        try:
            return self._client.request(method, url, content=content, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise _translate(exc, self.base_url) from exc

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- unauthenticated ------------------------------------------------------------------

    def health(self) -> Timed:
        """GET /healthz; the receiver's clock from its Date header (1 s resolution)."""
        sent = self._now_ms()
        response = self.request("GET", "/healthz", headers={})
        mid = (sent + self._now_ms()) // 2
        payload = _expect(response, 200, "health check")
        return Timed(payload, _date_ms(response.headers.get("date")), mid)

    # -- device endpoints (signed) --------------------------------------------------------

    def _signed(
        self,
        key: Ed25519PrivateKey,
        method: str,
        path: str,
        body: bytes,
        *,
        tag: str,
    ) -> httpx.Response:
        headers = {"content-type": JSON, "content-digest": content_digest(body)}
        created = max(0, self._now_ms() // 1000)
        headers.update(sign_request(key, method, self.url(path), headers, created=created, tag=tag))
        return self.request(method, path, content=body, headers=headers)

    def enroll(self, key: Ed25519PrivateKey, token: str, device_id: str) -> Enrolled:
        """POST /v1/enroll signed by the new key (the proof of possession)."""
        body = _json_bytes(
            {
                "token": token,
                "device_id": device_id,
                "public_key": b64url_encode(public_key_to_raw(key.public_key())),
            }
        )
        response = self._signed(key, "POST", ENROLL_PATH, body, tag=ENROLL_TAG)
        if response.status_code == 401:
            raise TokenRefusedError(
                "the receiver refused the enrolment token: it is unknown, already used, "
                "revoked or altered; ask the operator for a new one (edgectl token create)"
            )
        payload = _expect(response, 201, "enrolment")
        try:
            return Enrolled(
                device_id=str(payload["device_id"]),
                keyid=str(payload["keyid"]),
                head_seq=int(payload.get("head_seq", 0)),
                server_time_ms=_int_or_none(payload.get("server_time_ms")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReceiverError("the enrolment answer is malformed") from exc

    def rotate(self, current: Ed25519PrivateKey, new: Ed25519PrivateKey, device_id: str) -> Rotated:
        """POST /v1/keys/rotate signed by `current`, with `new`'s proof of possession."""
        old_keyid, new_keyid = key_id(current.public_key()), key_id(new.public_key())
        pop = new.sign(rotate_pop_message(device_id, old_keyid, new_keyid))
        body = _json_bytes(
            {
                "new_public_key": b64url_encode(public_key_to_raw(new.public_key())),
                "pop": b64url_encode(pop),
            }
        )
        response = self._signed(current, "POST", ROTATE_PATH, body, tag=TAG)
        if response.status_code == 401:
            raise RefusedError(
                f"the receiver does not know the current key {old_keyid} (enrolled elsewhere, "
                "or the receiver's database was replaced): re-enrol this gateway"
            )
        payload = _expect(response, 200, "key rotation")
        try:
            return Rotated(
                str(payload["keyid"]), str(payload["old_keyid"]), int(payload["old_not_after_ms"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReceiverError("the rotation answer is malformed") from exc

    def chain_head(self, key: Ed25519PrivateKey) -> Timed:
        """Signed GET /v1/chain/head: proves the key is accepted; the receiver's time."""
        sent = self._now_ms()
        response = self._signed(key, "GET", CHAIN_HEAD_PATH, b"", tag=TAG)
        mid = (sent + self._now_ms()) // 2
        if response.status_code == 401:
            raise RefusedError(
                f"the receiver does not know key {key_id(key.public_key())} "
                "(not enrolled there, or enrolled on another receiver)"
            )
        payload = _expect(response, 200, "chain head")
        return Timed(payload, _int_or_none(payload.get("server_time_ms")), mid)


class AdminApi:
    """The operator endpoints under /v1/admin/, with the admin bearer token."""

    def __init__(self, receiver: Receiver, admin_token: str) -> None:
        self._r = receiver
        self._headers = {"authorization": f"Bearer {admin_token}", "content-type": JSON}

    def _call(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        content = b"" if body is None else _json_bytes(body)
        response = self._r.request(method, path, content=content, headers=self._headers)
        if response.status_code == 401:
            raise UnauthorizedError(
                f"the admin token was refused by {self._r.base_url} (check "
                "--admin-token-file, TIERLESS_ADMIN_TOKEN_FILE or TIERLESS_ADMIN_TOKEN)"
            )
        return _expect(response, expect, path)

    def create_token(self, device_id: str, ttl_s: int) -> dict[str, Any]:
        payload = self._call(
            "POST", "/v1/admin/tokens", {"device_id": device_id, "ttl_s": ttl_s}, expect=201
        )
        if not isinstance(payload.get("token"), str) or not isinstance(
            payload.get("expires_ms"), int
        ):
            raise ReceiverError("the token answer is malformed")
        return dict(payload)

    def list_devices(self) -> list[dict[str, Any]]:
        devices = self._call("GET", "/v1/admin/devices").get("devices")
        if not isinstance(devices, list):
            raise ReceiverError("the device list answer is malformed")
        return [d for d in devices if isinstance(d, dict)]

    def device(self, device_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/admin/devices/{_seg(device_id)}"))

    def set_status(self, device_id: str, action: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/admin/devices/{_seg(device_id)}/{action}"))

    def revoke_device(self, device_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/admin/devices/{_seg(device_id)}/revoke"))

    def revoke_key(self, keyid: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/admin/keys/{quote(keyid, safe='')}/revoke"))


def _seg(device_id: str) -> str:
    # Device ids may hold "/": the receiver matches the rest of the path, so it stays literal.
    return quote(device_id, safe="/")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(response.content)
    except ValueError:
        payload = None
    body: dict[str, Any] = payload if isinstance(payload, dict) else {}
    code = response.status_code
    if code == status and payload is not None:
        return body
    message = body.get("message")
    detail = f": {message}" if isinstance(message, str) and message.isprintable() else ""
    error = body.get("error", "")
    if code == 404:
        raise NotFoundError(f"{what}: not found on the receiver")
    if code in (403, 409):
        raise RefusedError(f"{what}: the receiver refused ({code} {error}{detail})")
    if code == 400:
        raise LocalError(f"{what}: the receiver found the request invalid{detail}")
    if code == 429:
        wait = response.headers.get("retry-after", "a while")
        raise ReceiverError(f"{what}: rate limited by the receiver; try again in {wait} s")
    raise ReceiverError(f"{what}: unexpected answer {code} {error}".rstrip())


def _translate(exc: httpx.HTTPError, base_url: str) -> ProvisioningError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TlsError(
                f"TLS to {base_url} failed: {cause.verify_message or 'certificate not trusted'}; "
                "pass --ca-file with the CA bundle that signed the receiver's certificate "
                "(and check this machine's clock)"
            )
        if isinstance(cause, ssl.SSLError):
            return TlsError(f"TLS to {base_url} failed: {cause.reason or cause}")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return UnreachableError(f"cannot reach the receiver at {base_url}: timed out")
    if isinstance(exc, httpx.TransportError):
        text = str(exc) or type(exc).__name__
        if "SSL" in text or "certificate" in text:
            return TlsError(f"TLS to {base_url} failed: {text}")
        return UnreachableError(f"cannot reach the receiver at {base_url}: {text}")
    return ReceiverError(f"request to {base_url} failed: {type(exc).__name__}")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _date_ms(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return None
