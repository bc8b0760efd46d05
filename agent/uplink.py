"""The agent's only HTTP code: signed requests to the receiver, responses classified.

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
attempts, the digest the receiver dedupes on does not. Requests are signed and sent by
`hostio.signedclient`, whose exceptions stop here; bodies are decoded into the structs of
`wire.http`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import ConfigError, RefusedError, SeqGapError, TransientUplinkError
from hostio.errors import CaBundleError, ExchangeError
from hostio.signedclient import Reply, SignedClient, async_http_client
from wire.codec import MEDIA_TYPE
from wire.compression import GZIP, ZSTD, choose_encoding, compress
from wire.errors import SignatureError
from wire.http import (
    BATCHES_PATH,
    CHAIN_HEAD_PATH,
    HEALTH_REPORT_PATH,
    JSON_MEDIA_TYPE,
    BatchAck,
    ChainHead,
    ErrorBody,
    ErrorCode,
    HealthAck,
    HealthReport,
)
from wire.keys import b64url_decode
from wire.remoteconfig import CONFIG_PATH, SignedConfig
from wire.signatures import TAG

_TRANSIENT = {429: "rate_limited", 500: "server", 502: "server", 503: "server", 504: "server"}
MAX_RETRY_AFTER_S = 3600.0  # a receiver may ask for patience, but not for a day of silence
T = TypeVar("T")


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
        return async_http_client(
            ca_file=ca_file, trust_env=trust_env, timeout_s=timeout_s, transport=transport
        )
    except CaBundleError as exc:
        raise ConfigError([f"cloud.ca_file: {exc}"]) from exc


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
        # The whole exchange is bounded at twice httpx's per-phase timeout.
        self._client = SignedClient(
            client, base_url=base_url, now_ms=now_ms, deadline_s=timeout_s * 2
        )
        self.key = key  # the caller swaps it after a key rotation; each request signs with it
        self._mono_ms = mono_ms
        self.accept_encoding: str | None = None
        self._zstd_refused = False
        self.encoding = GZIP

    async def send_batch(self, seq: int, body: bytes) -> Ack:
        """POST one frozen batch body; see the module docstring for the outcomes."""
        encoding = self._pick_encoding()
        data = compress(body, encoding)
        headers = {"content-type": MEDIA_TYPE, "content-encoding": encoding}
        sent = self._mono_ms()
        reply = await self._request("POST", BATCHES_PATH, data, headers)
        recv = self._mono_ms()
        status = reply.status
        if status == 200:
            # Only a receiver's own acknowledgement of this very batch deletes it: a 200 from
            # something else (a wrong URL, a proxy's default page) must never empty the buffer.
            ack = _decode(reply.content, BatchAck)
            if ack is None or ack.seq != seq:
                raise RefusedError(
                    f"200 without an acknowledgement of seq {seq} (is cloud.url the receiver?)",
                    status=200,
                    code="not_an_ack",
                )
            return Ack(
                seq=seq,
                status=str(ack.status),
                server_time_ms=ack.server_time_ms,
                sent_mono_ms=sent,
                recv_mono_ms=recv,
                wire_bytes=reply.sent_bytes,
            )
        error = _decode(reply.content, ErrorBody)
        code = error.error if error is not None else ""
        if status == 409 and code == ErrorCode.SEQ_GAP and error and error.expected_seq is not None:
            raise SeqGapError(
                f"409 seq_gap: receiver expects seq {error.expected_seq}",
                expected_seq=error.expected_seq,
            )
        if status == 415 and encoding == ZSTD:
            self._zstd_refused = True
            raise TransientUplinkError("415 for zstd: falling back to gzip", cause="encoding")
        self._raise_for(reply, code)
        raise AssertionError("unreachable")  # pragma: no cover - _raise_for always raises

    async def chain_head(self) -> Head:
        """Where the receiver's copy of our chain ends (after this gateway lost its buffer)."""
        sent = self._mono_ms()
        reply = await self._request("GET", CHAIN_HEAD_PATH, b"", {"content-type": JSON_MEDIA_TYPE})
        recv = self._mono_ms()
        if reply.status != 200:
            error = _decode(reply.content, ErrorBody)
            self._raise_for(reply, error.error if error is not None else "")
        head = _decode(reply.content, ChainHead)
        try:
            if head is None:
                raise ValueError("not a chain head")
            return Head(head.seq, b64url_decode(head.digest), head.server_time_ms, sent, recv)
        except (ValueError, SignatureError) as exc:
            raise TransientUplinkError("chain head response is malformed", cause="server") from exc

    async def fetch_config(self) -> SignedConfig | None:
        """The newest config pushed to this gateway (`GET /v1/config`), unverified: the caller
        verifies it (`agent.applier`); None when none was pushed (404)."""
        reply = await self._request("GET", CONFIG_PATH, b"", {"content-type": JSON_MEDIA_TYPE})
        if reply.status == 404:
            return None
        if reply.status != 200:
            error = _decode(reply.content, ErrorBody)
            self._raise_for(reply, error.error if error is not None else "")
        signed = _decode(reply.content, SignedConfig)
        if signed is None:
            raise TransientUplinkError("config response is malformed", cause="server")
        return signed

    async def send_health(self, report: HealthReport) -> HealthAck:
        """POST one health report (JSON, uncompressed: it is small). Returns on the receiver's
        `HealthAck`; raises TransientUplinkError or RefusedError like a batch otherwise. The
        caller never retries a report: the next one replaces it."""
        body = msgspec.json.encode(report)
        reply = await self._request(
            "POST", HEALTH_REPORT_PATH, body, {"content-type": JSON_MEDIA_TYPE}
        )
        ack = _decode(reply.content, HealthAck) if reply.status == 200 else None
        if ack is not None:
            return ack
        error = _decode(reply.content, ErrorBody)
        code = error.error if error is not None else ""
        if reply.status == 200:
            raise RefusedError(
                "200 without a health acknowledgement", status=200, code="not_an_ack"
            )
        self._raise_for(reply, code)

    def _pick_encoding(self) -> str:
        chosen = choose_encoding(self.accept_encoding)
        self.encoding = GZIP if chosen == ZSTD and self._zstd_refused else chosen
        return self.encoding

    async def _request(self, method: str, path: str, data: bytes, headers: dict[str, str]) -> Reply:
        try:
            reply = await self._client.signed(self.key, method, path, data, headers, tag=TAG)
        except ExchangeError as exc:
            raise TransientUplinkError(str(exc), cause="transport") from exc
        accept = reply.headers.get("accept-encoding")
        if accept is not None:
            self.accept_encoding = accept
        return reply

    @staticmethod
    def _raise_for(reply: Reply, code: str) -> NoReturn:
        status = reply.status
        if status in _TRANSIENT:
            raise TransientUplinkError(
                f"{status} {code or _TRANSIENT[status]}",
                cause=_TRANSIENT[status],
                retry_after_s=parse_retry_after(reply.headers.get("retry-after")),
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


def _decode(content: bytes, kind: type[T]) -> T | None:
    """`content` as a `kind` body, None when it is not one."""
    try:
        return msgspec.json.decode(content, type=kind)
    except msgspec.DecodeError:
        return None
