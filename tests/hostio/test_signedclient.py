"""The shared signed-request client: what it signs, what it reports, how it translates failures."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hostio.errors import (
    CaBundleError,
    CertificateError,
    ExchangeError,
    ExchangeTimeoutError,
    TlsError,
    UnreachableError,
)
from hostio.signedclient import (
    PLAIN_HTTP_HINT,
    SignedClient,
    SyncSignedClient,
    async_http_client,
    signed_headers,
    sync_http_client,
    translate,
)
from wire.digest import verify_content_digest
from wire.signatures import ENROLL_TAG, TAG, parse_signature, verify_request

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW_MS = 1_790_000_003_456
BASE = "https://ingest.test/prefix"
JSON = {"content-type": "application/json"}


def verify(request: httpx.Request, tag: str) -> None:
    parsed = parse_signature(request.headers["signature-input"], request.headers["signature"])
    assert parsed.params.created == NOW_MS // 1000
    covered = {k: request.headers[k] for k in ("content-type", "content-digest")}
    verify_request(
        parsed, KEY.public_key(), request.method, str(request.url), covered, expect_tag=tag
    )
    verify_content_digest(request.headers["content-digest"], request.content)


def test_signed_headers_cover_the_body_and_the_target() -> None:
    headers = signed_headers(
        KEY,
        "POST",
        BASE + "/v1/x",
        b"{}",
        {"content-type": "application/json"},
        now_ms=NOW_MS,
        tag=TAG,
    )
    assert set(headers) == {"content-type", "content-digest", "signature-input", "signature"}
    request = httpx.Request("POST", BASE + "/v1/x", content=b"{}", headers=headers)
    verify(request, TAG)


def test_a_clock_before_1970_signs_created_0() -> None:
    headers = signed_headers(KEY, "GET", BASE, b"", JSON, now_ms=-5000, tag=TAG)
    assert ";created=0;" in headers["signature-input"]


async def test_async_client_signs_and_reports_the_answer() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, content=b'{"a":1}', headers={"Retry-After": "3"})

    transport = httpx.MockTransport(answer)
    async with async_http_client(
        ca_file=None, trust_env=False, timeout_s=5, transport=transport
    ) as http:
        client = SignedClient(http, base_url=BASE + "/", now_ms=lambda: NOW_MS, deadline_s=5)
        body = b'{"x":2}'
        reply = await client.signed(
            KEY, "POST", "/v1/enroll", body, {"content-type": "application/json"}, tag=ENROLL_TAG
        )
    assert (reply.status, reply.content, reply.headers["retry-after"]) == (201, b'{"a":1}', "3")
    assert str(seen[0].url) == BASE + "/v1/enroll"
    verify(seen[0], ENROLL_TAG)
    assert reply.sent_bytes > len(body) + sum(len(v) for v in seen[0].headers.values())


def test_sync_client_signs_and_sends_unsigned_requests_too() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    http = sync_http_client(BASE, ca_file=None, timeout_s=5, transport=httpx.MockTransport(answer))
    with SyncSignedClient(http, base_url=BASE, now_ms=lambda: NOW_MS) as client:
        client.signed(
            KEY, "GET", "/v1/chain/head", b"", {"content-type": "application/json"}, tag=TAG
        )
        client.request("GET", "/healthz", b"", {"authorization": "Bearer t"})
    verify(seen[0], TAG)
    assert "signature" not in seen[1].headers
    assert seen[1].headers["authorization"] == "Bearer t"


@pytest.mark.parametrize(
    ("exc", "kind", "detail"),
    [
        (httpx.ConnectError("refused"), UnreachableError, "refused"),
        (httpx.ReadTimeout("slow"), ExchangeTimeoutError, "timed out"),
        (TimeoutError(), ExchangeTimeoutError, "timed out"),
        (
            httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER]"),
            TlsError,
            f"[SSL: WRONG_VERSION_NUMBER] ({PLAIN_HTTP_HINT})",
        ),
        (
            httpx.ConnectError("[SSL: TLSV1_ALERT_INTERNAL]"),
            TlsError,
            "[SSL: TLSV1_ALERT_INTERNAL]",
        ),
        (httpx.DecodingError("bad gzip"), ExchangeError, "DecodingError"),
    ],
)
def test_failures_are_translated(exc: Exception, kind: type[ExchangeError], detail: str) -> None:
    translated = translate(exc)
    assert type(translated) is kind
    assert translated.detail == detail
    assert str(translated).startswith(type(exc).__name__)


def test_certificate_failures_are_found_in_the_cause_chain() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    exc = httpx.ConnectError("handshake")
    exc.__cause__ = cause
    translated = translate(exc)
    assert isinstance(translated, CertificateError)
    assert translated.detail == "self-signed certificate"


async def test_the_deadline_bounds_the_whole_exchange() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200)  # pragma: no cover

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
        client = SignedClient(http, base_url=BASE, now_ms=lambda: NOW_MS, deadline_s=0.01)
        with pytest.raises(ExchangeTimeoutError):
            await client.signed(KEY, "GET", "/", b"", JSON, tag=TAG)


def test_an_unreadable_ca_bundle_is_a_config_error(tmp_path) -> None:
    with pytest.raises(CaBundleError) as info:
        async_http_client(ca_file=str(tmp_path / "nope.pem"), trust_env=False, timeout_s=1)
    assert "nope.pem" in str(info.value)
    assert info.value.reason


def test_https_to_a_plain_http_receiver_says_so() -> None:
    """A real exchange: an https:// URL, a server that answers in plain HTTP."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)  # the TLS client hello, read as a request
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    base = f"https://127.0.0.1:{port}"
    try:
        http = sync_http_client(base, ca_file=None, timeout_s=10)
        with (
            SyncSignedClient(http, base_url=base, now_ms=lambda: NOW_MS) as client,
            pytest.raises(TlsError) as info,
        ):
            client.request("GET", "/healthz", b"", {})
    finally:
        thread.join(10)
        server.close()
    assert PLAIN_HTTP_HINT in info.value.detail
