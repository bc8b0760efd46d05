"""The only module that speaks HTTP: signed requests to the receiver, responses classified.

One attempt per call; the caller (`agent.sync`) decides about retries from the error class:

    200 stored/duplicate          -> Ack
    409 seq_gap                   -> SeqGapError(expected_seq)
    429, 500, 502, 503, 504       -> TransientUplinkError(cause, Retry-After)
    transport errors, timeouts    -> TransientUplinkError("transport")
    415 while sending zstd        -> TransientUplinkError("encoding"); zstd is not offered again
    400 401 403 409-conflict 413 415-gzip, anything else
                                  -> RefusedError(status, code): stop, keep the data, alarm

Content-coding: gzip until a response's `Accept-Encoding` lists zstd (and this side has it). The
body bytes are the frozen batch; only the coding and the signature (new `created`) differ between
attempts, the digest the receiver dedupes on does not. httpx exceptions stop here.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import ConfigError, RefusedError, SeqGapError, TransientUplinkError
from wire.codec import MEDIA_TYPE
from wire.compression import GZIP, ZSTD, choose_encoding, compress
from wire.digest import content_digest
from wire.errors import SignatureError
from wire.keys import b64url_decode
from wire.signatures import TAG, sign_request

_TRANSIENT = {429: "rate_limited", 500: "server", 502: "server", 503: "server", 504: "server"}
MAX_RETRY_AFTER_S = 3600.0  # a receiver may ask for patience, but not for a day of silence


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    status: str  # "stored" or "duplicate"
    server_time_ms: int | None
    sent_mono_ms: int
    recv_mono_ms: int
    wire_bytes: int  # request body + headers, as sent


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    digest: bytes
    server_time_ms: int | None
    sent_mono_ms: int
    recv_mono_ms: int


def make_client(
    *,
    ca_file: str | None,
    trust_env: bool,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """HTTP/1.1 with keep-alive; TLS verified against `ca_file` (else the system store)."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"cloud.ca_file: cannot load '{ca_file}': {exc}"]) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return httpx.AsyncClient(
        verify=context,
        trust_env=trust_env,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        follow_redirects=False,  # a redirect would be a different @target-uri: never follow
        transport=transport,
    )


# The `status` values of a receiver's 200 that acknowledge a batch (docs/protocol.md).
ACK_STATUSES = ("stored", "duplicate")


class Uplink:
    """Signed requests for one device."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        key: Ed25519PrivateKey,
        now_ms: Callable[[], int],
        mono_ms: Callable[[], int] = lambda: time.monotonic_ns() // 1_000_000,
        timeout_s: float = 30.0,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self.key = key  # the caller swaps it after a key rotation; each request signs with it
        self._now_ms = now_ms
        self._mono_ms = mono_ms
        self._timeout_s = timeout_s
        self.accept_encoding: str | None = None
        self._zstd_refused = False
        self.encoding = GZIP

    async def send_batch(self, seq: int, body: bytes) -> Ack:
        """POST one frozen batch body; see the module docstring for the outcomes."""
        encoding = self._pick_encoding()
        data = compress(body, encoding)
        headers = {"content-type": MEDIA_TYPE, "content-encoding": encoding}
        sent = self._mono_ms()
        response = await self._request("POST", "/v1/batches", data, headers)
        recv = self._mono_ms()
        payload = _json(response)
        status = response.status_code
        if status == 200:
            # Only a receiver's own acknowledgement of this very batch deletes it: a 200 from
            # something else (a wrong URL, a proxy's default page) must never empty the buffer.
            if payload.get("status") not in ACK_STATUSES or payload.get("seq") != seq:
                raise RefusedError(
                    f"200 without an acknowledgement of seq {seq} (is cloud.url the receiver?)",
                    status=200,
                    code="not_an_ack",
                )
            return Ack(
                seq=seq,
                status=str(payload["status"]),
                server_time_ms=_int_or_none(payload.get("server_time_ms")),
                sent_mono_ms=sent,
                recv_mono_ms=recv,
                wire_bytes=len(data) + _header_bytes(response.request),
            )
        code = str(payload.get("error", ""))
        if status == 409 and code == "seq_gap" and isinstance(payload.get("expected_seq"), int):
            raise SeqGapError(
                f"409 seq_gap: receiver expects seq {payload['expected_seq']}",
                expected_seq=payload["expected_seq"],
            )
        if status == 415 and encoding == ZSTD:
            self._zstd_refused = True
            raise TransientUplinkError("415 for zstd: falling back to gzip", cause="encoding")
        self._raise_for(response, code)
        raise AssertionError("unreachable")  # pragma: no cover - _raise_for always raises

    async def chain_head(self) -> Head:
        """Where the receiver's copy of our chain ends (after this gateway lost its buffer)."""
        sent = self._mono_ms()
        response = await self._request(
            "GET", "/v1/chain/head", b"", {"content-type": "application/json"}
        )
        recv = self._mono_ms()
        payload = _json(response)
        if response.status_code != 200:
            self._raise_for(response, str(payload.get("error", "")))
        try:
            return Head(
                int(payload["seq"]),
                b64url_decode(str(payload["digest"])),
                _int_or_none(payload.get("server_time_ms")),
                sent,
                recv,
            )
        except (KeyError, TypeError, ValueError, SignatureError) as exc:
            raise TransientUplinkError("chain head response is malformed", cause="server") from exc

    def _pick_encoding(self) -> str:
        chosen = choose_encoding(self.accept_encoding)
        self.encoding = GZIP if chosen == ZSTD and self._zstd_refused else chosen
        return self.encoding

    async def _request(
        self, method: str, path: str, data: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        url = self._base + path
        headers = {**headers, "content-digest": content_digest(data)}
        created = max(0, self._now_ms() // 1000)
        headers.update(sign_request(self.key, method, url, headers, created=created, tag=TAG))
        try:
            # httpx's own timeouts are per phase; this bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s * 2):
                response = await self._client.request(method, url, content=data, headers=headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise TransientUplinkError(
                f"{type(exc).__name__}: {exc or 'no detail'}", cause="transport"
            ) from exc
        accept = response.headers.get("accept-encoding")
        if accept is not None:
            self.accept_encoding = accept
        return response

    @staticmethod
    def _raise_for(response: httpx.Response, code: str) -> None:
        status = response.status_code
        if status in _TRANSIENT:
            raise TransientUplinkError(
                f"{status} {code or _TRANSIENT[status]}",
                cause=_TRANSIENT[status],
                retry_after_s=parse_retry_after(response.headers.get("retry-after")),
                status=status,
            )
        raise RefusedError(_refusal_text(status, code), status=status, code=code)


_REFUSAL_HINTS = {
    400: "the receiver cannot read our batch (agent bug)",
    401: "signature or key not accepted (not enrolled, or wrong key)",
    403: "device revoked or disabled; re-enrolment needed",
    409: "our chain forks from the receiver's; an operator must decide",
    413: "batch too large for the receiver",
    415: "content type or coding refused",
}


def _refusal_text(status: int, code: str) -> str:
    hint = _REFUSAL_HINTS.get(status, "unexpected response")
    return f"{status} {code or 'error'} ({hint})"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER_S)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = json.loads(response.content)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _header_bytes(request: httpx.Request) -> int:
    # request line + "name: value\r\n" per header + the blank line
    line = len(request.method) + len(request.url.raw_path) + len(" HTTP/1.1\r\n") + 1
    return line + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2
