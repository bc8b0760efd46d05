"""Test helpers for the receiver: a simulated gateway that builds, freezes and signs batches.

`Gateway` holds an Ed25519 key and a chain head, like a real agent: `next_batch()` cuts the next
batch (seq = head + 1, prev = head digest) and advances the head; `batch_request()` content-codes
and signs a frozen batch for `POST /v1/batches`; `signed()` signs any request. The agent's tests
may reuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.receiver.tokens import issue_token
from cloud.storage.batches import BatchMeta
from cloud.storage.registry import EnrollRequest
from cloud.storage.store import Store
from wire.codec import MEDIA_TYPE, batch_digest, encode_batch
from wire.compression import compress
from wire.digest import content_digest
from wire.enrollment import parse_token
from wire.keys import b64url_encode, key_id, public_key_to_raw
from wire.models import (
    GENESIS,
    Batch,
    ClockReport,
    ClockState,
    Counters,
    Event,
    SeriesData,
    SeriesKey,
)
from wire.signatures import ENROLL_TAG, TAG, sign_request

BASE_URL = "http://testserver"
START_MS = 1_790_000_000_000
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Frozen:
    """A cut batch: what an agent persists before the first send."""

    batch: Batch
    body: bytes
    digest: bytes

    @property
    def seq(self) -> int:
        return self.batch.seq


def make_series(
    seq: int, n_readings: int, n_series: int, *, site: str = "plant-1"
) -> list[SeriesData]:
    out = []
    per = max(1, n_readings // max(1, n_series))
    for i in range(n_series):
        key = SeriesKey(f"power_{i:02d}", "kW", site, f"hall-{i % 3}", "melting", "electricity")
        s = SeriesData(key)
        for j in range(per):
            s.append(START_MS + (seq * per + j) * 1000, round(100 + i + j * 0.1 + seq, 1))
        out.append(s)
    return out


@dataclass
class Gateway:
    device_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    base_url: str = BASE_URL
    head_seq: int = 0
    head_digest: bytes = GENESIS

    @property
    def keyid(self) -> str:
        return key_id(self.key.public_key())

    @property
    def public_key_b64(self) -> str:
        return b64url_encode(public_key_to_raw(self.key.public_key()))

    def build(
        self,
        seq: int,
        prev: bytes,
        *,
        n_readings: int = 10,
        n_series: int = 1,
        events: Sequence[Event] = (),
        counters: Counters | None = None,
        device_id: str | None = None,
        config_version: str = "",
    ) -> Frozen:
        batch = Batch(
            device_id=device_id or self.device_id,
            seq=seq,
            prev=prev,
            boot_id="boot-0001",
            series=make_series(seq, n_readings, n_series) if n_readings else [],
            events=list(events),
            counters=counters or Counters(),
            clock=ClockReport(ClockState.SYNCED, 12),
            config_version=config_version,
        )
        body = encode_batch(batch)
        return Frozen(batch, body, batch_digest(body))

    def next_batch(self, **kwargs: object) -> Frozen:
        """Cut the next batch of this gateway's chain and advance the local head."""
        frozen = self.build(self.head_seq + 1, self.head_digest, **kwargs)  # type: ignore[arg-type]
        self.head_seq, self.head_digest = frozen.seq, frozen.digest
        return frozen

    def signed(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        content_type: str = JSON,
        encoding: str | None = None,
        tag: str = TAG,
        key: Ed25519PrivateKey | None = None,
        base_url: str | None = None,
        created: int | None = None,
    ) -> dict[str, str]:
        headers = {"content-type": content_type, "content-digest": content_digest(body)}
        if encoding is not None:
            headers["content-encoding"] = encoding
        headers.update(
            sign_request(
                key or self.key,
                method,
                (base_url or self.base_url) + path,
                headers,
                created=int(time.time()) if created is None else created,
                tag=tag,
            )
        )
        return headers

    def batch_request(
        self, frozen: Frozen, *, encoding: str | None = "gzip", **kwargs: object
    ) -> tuple[dict[str, str], bytes]:
        wire = compress(frozen.body, encoding) if encoding else frozen.body
        headers = self.signed(
            "POST",
            "/v1/batches",
            wire,
            content_type=MEDIA_TYPE,
            encoding=encoding,
            **kwargs,  # type: ignore[arg-type]
        )
        return headers, wire

    def enroll_request(self, token: str) -> tuple[dict[str, str], bytes]:
        body = json.dumps(
            {"token": token, "device_id": self.device_id, "public_key": self.public_key_b64}
        ).encode()
        return self.signed("POST", "/v1/enroll", body, tag=ENROLL_TAG), body

    def meta(self, frozen: Frozen, *, received_ms: int = START_MS) -> BatchMeta:
        return BatchMeta(
            device_id=frozen.batch.device_id,
            seq=frozen.seq,
            digest=frozen.digest,
            prev=frozen.batch.prev,
            keyid=self.keyid,
            sig_created=received_ms // 1000,
            received_ms=received_ms,
            content_encoding="gzip",
            wire_bytes=len(frozen.body),
        )


async def register(store: Store, gw: Gateway, *, now_ms: int = START_MS) -> None:
    """Issue a token and enrol the gateway's key directly in the store (no HTTP)."""
    token, record = issue_token(gw.device_id, now_ms=now_ms, ttl_ms=3_600_000)
    await store.create_token(record)
    parsed = parse_token(token)
    head = await store.enroll(
        EnrollRequest(
            parsed.token_id,
            parsed.token_hash,
            gw.device_id,
            gw.keyid,
            public_key_to_raw(gw.key.public_key()),
            now_ms,
        ),
        max_failures=5,
    )
    assert head is not None


TABLES = ("batch", "reading", "event", "series", "chain_event", "device_key", "device")


async def row_counts(store: Store) -> dict[str, int]:
    """Rows per table, read through a separate connection (what another reader would see)."""
    from cloud.storage.postgres import PostgresStore
    from cloud.storage.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        import sqlite3

        conn = sqlite3.connect(store.path)
        try:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            conn.close()
    assert isinstance(store, PostgresStore)
    import psycopg

    async with await psycopg.AsyncConnection.connect(store.dsn) as aconn:
        out = {}
        for t in TABLES:
            cur = await aconn.execute(f"SELECT count(*) FROM {t}")
            row = await cur.fetchone()
            assert row is not None
            out[t] = int(row[0])
        return out


@contextlib.asynccontextmanager
async def serve_app(
    make_app: Callable[[str], Any], *, scheme: str = "http", **uvicorn_options: Any
) -> AsyncIterator[str]:
    """Run an ASGI app on a real loopback socket in this event loop; yields the base URL.

    `make_app(base_url)` builds the app once the port is known (its public URL is that port).
    """
    import uvicorn

    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        make_app(base_url),
        lifespan="off",
        log_level="warning",
        server_header=False,
        **uvicorn_options,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    await server.on_tick(0)
    try:
        yield base_url
    finally:
        # uvicorn's own shutdown() sleeps 0.1 s and polls; here every step is awaited instead.
        for listener in server.servers:
            listener.close()
        sock.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        await asyncio.gather(*server.server_state.tasks, return_exceptions=True)
        for listener in server.servers:
            await listener.wait_closed()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def spawn_receiver(
    args: Sequence[str],
    env: dict[str, str],
    *,
    ready_timeout_s: float = 20.0,
    expect_exit: Sequence[int] = (0, -signal.SIGTERM),
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m cloud <args>` as a child process, yielded once uvicorn says it listens.

    Stops it with SIGTERM on exit and fails unless it exits with one of `expect_exit` (by
    default: cleanly).
    """
    import os
    import sys
    import tempfile

    full_env = {**os.environ, **env}
    # A directory of its own: what a receiver creates in its working directory (the token files
    # and the config-signing key, without --token-dir on PostgreSQL) must not land in the
    # checkout, where the next test, or another worker, would find it.
    cwd = tempfile.TemporaryDirectory(prefix="receiver-")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud",
        *args,
        env=full_env,
        cwd=cwd.name,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(ready_timeout_s):
            while True:
                line = (await proc.stderr.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError(f"receiver exited early: {''.join(seen)}")
                seen.append(line)
                if "listening on " in line:
                    break
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            async with asyncio.timeout(15):
                code = await proc.wait()
                await _drain(proc.stderr, seen)
        finally:
            cwd.cleanup()
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
    assert code in expect_exit, "".join(seen)


async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))
