"""An in-process fake receiver for the uplink tests: verifies like the real one, answers from a
script. The real receiver runs in tests/agent/test_e2e_*.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wire.codec import batch_digest, decode_batch
from wire.compression import decompress
from wire.digest import verify_content_digest
from wire.keys import b64url_encode
from wire.models import GENESIS
from wire.remoteconfig import SignedConfig
from wire.signatures import parse_signature, verify_request

SERVER_MS = 1_800_000_000_000

Reply = Callable[[httpx.Request], httpx.Response | None]


def reply(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers or {})


@dataclass
class FakeReceiver:
    """Stores batches by seq like the receiver: duplicate on same digest, conflict otherwise.

    `script` holds replies to use instead, one per request, in order (None: behave normally)."""

    key: Ed25519PrivateKey
    script: list[Reply | None] = field(default_factory=list)
    batches: dict[int, bytes] = field(default_factory=dict)  # seq -> decoded body
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # decoded body of every batch request
    head: tuple[int, bytes] = (0, GENESIS)
    accept_encoding: str = "gzip"
    config: SignedConfig | None = None  # what GET /v1/config serves; its version is "desired"
    reports: list[dict[str, Any]] = field(default_factory=list)  # health reports, as JSON

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        parsed = parse_signature(headers["signature-input"], headers["signature"])
        verify_request(parsed, self.key.public_key(), request.method, str(request.url), headers)
        verify_content_digest(headers["content-digest"], request.content)
        if request.url.path == "/v1/batches":
            body = decompress(request.content, headers.get("content-encoding"), 8 << 20)
            self.bodies.append(body)
        step = self.script.pop(0) if self.script else None
        response = step(request) if step is not None else None
        if response is None:
            response = self._normal(request)
        response.headers["accept-encoding"] = self.accept_encoding
        return response

    def _normal(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health":
            self.reports.append(json.loads(request.content))
            desired = None if self.config is None else self.config.version
            return reply(
                200,
                {
                    "status": "stored",
                    "server_time_ms": SERVER_MS,
                    "desired_config_version": desired,
                },
            )
        if request.url.path == "/v1/config":
            if self.config is None:
                return reply(404, {"error": "not_found", "message": "no such config"})
            return httpx.Response(200, content=msgspec.json.encode(self.config))
        if request.url.path == "/v1/chain/head":
            seq, digest = self.head
            return reply(
                200,
                {
                    "device_id": "gw-test",
                    "seq": seq,
                    "digest": b64url_encode(digest),
                    "server_time_ms": SERVER_MS,
                },
            )
        body = self.bodies[-1]
        batch = decode_batch(body)
        digest = batch_digest(body)
        seq, head_digest = self.head
        if batch.seq <= seq:
            if batch_digest(self.batches[batch.seq]) == digest:
                return reply(
                    200, {"status": "duplicate", "seq": batch.seq, "server_time_ms": SERVER_MS}
                )
            return reply(409, {"error": "chain_conflict", "expected_seq": seq + 1})
        if batch.seq > seq + 1:
            return reply(409, {"error": "seq_gap", "expected_seq": seq + 1})
        if batch.prev != head_digest:
            return reply(409, {"error": "chain_conflict", "expected_seq": seq + 1})
        self.batches[batch.seq] = body
        self.head = (batch.seq, digest)
        return reply(200, {"status": "stored", "seq": batch.seq, "server_time_ms": SERVER_MS})

    def values(self) -> list[float]:
        return [
            r.value
            for seq in sorted(self.batches)
            for r in decode_batch(self.batches[seq]).readings()
        ]
