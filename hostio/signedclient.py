"""The one HTTP client of the gateway side: requests to the receiver, signed and sent with httpx.

Used by the agent's uplink (`agent.uplink`, asyncio) and by edgectl (`provisioning.client`,
blocking). Both sign the same way (RFC 9421 via `wire.signatures`, tag chosen by the caller, over
`@method`, `@target-uri` and the content headers; `Content-Digest` of the body as sent;
`created` = our clock in whole seconds), build the same httpx client (TLS 1.2 or newer verified
against `ca_file`, else the system store; redirects never followed, since a redirect would change
the signed `@target-uri`), and read the answer the same way. Each caller classifies the answer
itself; this module only carries it back as a `Reply`.

httpx and ssl exceptions stop here, translated once:

    SignedClientError                  anything this module raises
    ├── CaBundleError                  the CA bundle cannot be loaded: fix the configuration
    └── ExchangeError                  no usable HTTP answer came back; retry later
        ├── TlsError                   the TLS handshake failed
        │   └── CertificateError       the receiver's certificate is not trusted
        ├── ExchangeTimeoutError       no answer in time
        └── UnreachableError           connect, DNS, reset, a broken HTTP exchange

`str()` of an ExchangeError names the foreign exception and its text (for logs); `detail` is the
short reason for a person (the verify message for a certificate, "timed out", ...).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hostio.errors import (
    CaBundleError,
    CertificateError,
    ExchangeError,
    ExchangeTimeoutError,
    TlsError,
    UnreachableError,
)
from wire.digest import content_digest
from wire.signatures import sign_request

__all__ = [
    "Reply",
    "SignedClient",
    "SyncSignedClient",
    "async_http_client",
    "signed_headers",
    "sync_http_client",
    "tls_context",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, headers (lowercase names, repeated fields joined with ", "), body,
    and the size of the request as sent (body, request line and headers)."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    sent_bytes: int


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context trusting `ca_file` (else the system store), TLS 1.2 or newer."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CaBundleError(f"cannot load '{ca_file}': {exc}", reason=str(exc)) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


KEEPALIVE_EXPIRY_S = 15.0


def async_http_client(
    *,
    ca_file: str | None,
    trust_env: bool,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The agent's client: HTTP/1.1 with keep-alive, at most two connections."""
    return httpx.AsyncClient(
        verify=tls_context(ca_file),
        trust_env=trust_env,
        timeout=httpx.Timeout(timeout_s),
        # Keep the upload connection between batches: the agent's default batch interval is
        # 5 s, httpx's default idle expiry is 5 s too, and the receiver keeps idle connections
        # for 20 s; 15 s stays under the receiver's, so it never closes one we are about to use.
        limits=httpx.Limits(
            max_connections=2, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_EXPIRY_S
        ),
        follow_redirects=False,
        transport=transport,
    )


def sync_http_client(
    base_url: str,
    *,
    ca_file: str | None,
    timeout_s: float,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """edgectl's client; the CA bundle is loaded only for an https `base_url`, and the
    environment's proxy and certificate settings are ignored, like the agent's default."""
    verify: ssl.SSLContext | bool = True
    if base_url.startswith("https:"):
        verify = tls_context(ca_file)
    return httpx.Client(
        verify=verify,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_s),
        transport=transport,
    )


def signed_headers(
    key: Ed25519PrivateKey,
    method: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now_ms: int,
    tag: str,
) -> dict[str, str]:
    """`headers` (lowercase names) plus Content-Digest of `body` and the signature fields."""
    out = {**headers, "content-digest": content_digest(body)}
    created = max(0, now_ms // 1000)
    out.update(sign_request(key, method, url, out, created=created, tag=tag))
    return out


class SignedClient:
    """Requests to one receiver over an `httpx.AsyncClient` the caller owns and closes.

    Each exchange is bounded as a whole by `deadline_s` (httpx's own timeouts are per phase)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        now_ms: Callable[[], int],
        deadline_s: float,
    ) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._now_ms = now_ms
        self._deadline_s = deadline_s

    async def signed(
        self,
        key: Ed25519PrivateKey,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        tag: str,
    ) -> Reply:
        """`method path` with `body`, signed by `key`; ExchangeError when no answer came."""
        url = self.base_url + path
        signed = signed_headers(key, method, url, body, headers, now_ms=self._now_ms(), tag=tag)
        try:
            async with asyncio.timeout(self._deadline_s):
                response = await self._client.request(method, url, content=body, headers=signed)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise translate(exc) from exc
        return _reply(response, len(body))


class SyncSignedClient:
    """Requests to one receiver over an `httpx.Client` this object owns; a context manager."""

    def __init__(self, client: httpx.Client, *, base_url: str, now_ms: Callable[[], int]) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._now_ms = now_ms

    def __enter__(self) -> SyncSignedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """An unsigned request (health checks, the bearer-token admin API)."""
        try:
            response = self._client.request(
                method, self.base_url + path, content=body, headers=dict(headers)
            )
        except httpx.HTTPError as exc:
            raise translate(exc) from exc
        return _reply(response, len(body))

    def signed(
        self,
        key: Ed25519PrivateKey,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        tag: str,
    ) -> Reply:
        """`method path` with `body`, signed by `key`; ExchangeError when no answer came."""
        url = self.base_url + path
        signed = signed_headers(key, method, url, body, headers, now_ms=self._now_ms(), tag=tag)
        return self.request(method, path, body, signed)


# What OpenSSL says when the "TLS server" answers in plain text: the first bytes of an HTTP
# answer read as a TLS record header give a version it does not know.
_PLAIN_HTTP_SIGNS = ("WRONG_VERSION_NUMBER", "wrong version number", "HTTP_REQUEST", "http request")
PLAIN_HTTP_HINT = "the receiver speaks plain HTTP? use an http:// URL, or put TLS in front of it"


def _hinted(detail: str) -> str:
    if any(sign in detail for sign in _PLAIN_HTTP_SIGNS):
        return f"{detail} ({PLAIN_HTTP_HINT})"
    return detail


def translate(exc: Exception) -> ExchangeError:
    """The ExchangeError for an httpx exception (or an expired deadline). A TLS failure that
    means the peer answered in plain HTTP says so in its `detail`."""
    message = f"{type(exc).__name__}: {exc or 'no detail'}"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return CertificateError(
                message, detail=cause.verify_message or "certificate not trusted"
            )
        if isinstance(cause, ssl.SSLError):
            return TlsError(message, detail=_hinted(str(cause.reason or cause)))
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ExchangeTimeoutError(message, detail="timed out")
    if not isinstance(exc, httpx.TransportError):
        return ExchangeError(message, detail=type(exc).__name__)  # e.g. an undecodable answer
    text = str(exc) or type(exc).__name__
    if "SSL" in text or "certificate" in text:
        return TlsError(message, detail=_hinted(text))
    return UnreachableError(message, detail=text)


def _reply(response: httpx.Response, body_bytes: int) -> Reply:
    request = response.request
    # request line + "name: value\r\n" per header + the blank line
    line = len(request.method) + len(request.url.raw_path) + len(" HTTP/1.1\r\n") + 1
    header_bytes = line + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2
    headers = {name.lower(): value for name, value in response.headers.items()}
    return Reply(response.status_code, headers, response.content, body_bytes + header_bytes)
