"""Receiver benchmarks: `run(size) -> {"cloud.…": float}` (keys in docs/benchmarks.md).

What is measured, each next to its limit in the same run:
- `cloud.readings_per_s.<db>`: readings stored per second through a real `edge-cloud serve`
  process, 16 simulated gateways each with one keep-alive connection and one batch in flight
  (like the agent), large batches (10,000 readings, the reference shape);
- `cloud.limit_readings_per_s.<db>`: the same rows bulk-inserted straight into a fresh store of
  the same kind, one transaction per batch, with the store's own bulk path (the storage limit);
- `cloud.small_batches_per_s.<db>`: signed batches of 10 readings per second, same 16 gateways;
- `cloud.empty_post_per_s`: POSTs per second to an empty Starlette handler on the same uvicorn
  stack, same client: the HTTP limit;
- `cloud.small_batches_per_s.postgres.workers1` and `.workers2`: the small batches through
  `serve --workers 1` and `serve --workers 2`, each on a fresh PostgreSQL schema (totals), and
  `cloud.batches_per_s_per_worker`, the 2-worker total over 2; the target compares each
  per-worker figure with the one-process empty handler;
- `cloud.empty_post_per_s.workers2`: the empty handler in two processes on one port
  (SO_REUSEPORT, as `serve --workers 2` listens), total: what the HTTP stack alone gets from
  two processes on this machine, where the client and PostgreSQL take their share of the cores.
Every request is built and signed before the clock starts; the client is a few lines of raw
asyncio HTTP/1.1 in this process, the servers separate processes.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.reference import reference_series
from wire.codec import MEDIA_TYPE, batch_digest, encode_batch
from wire.compression import compress
from wire.digest import content_digest
from wire.keys import b64url_encode, public_key_to_raw
from wire.models import GENESIS, Batch, SeriesData, SeriesKey
from wire.signatures import ENROLL_TAG, sign_request

PG_DSN = os.environ.get("TIERLESS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/tierless_test")
ADMIN = "bench-admin-token-0123456789"
ROOT = Path(__file__).resolve().parents[1]
GATEWAYS = 16


@dataclass(frozen=True)
class Size:
    large_batches: int  # per gateway and repeat
    small_batches: int  # per gateway and repeat
    empty_posts: int  # per connection and repeat
    repeats: int


SIZES = {"small": Size(3, 60, 300, 1), "full": Size(12, 250, 1500, 3)}


# -- the client: pre-built HTTP/1.1 requests over raw keep-alive connections ----------------


async def _connection(port: int, requests: Sequence[bytes]) -> list[int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses = []
    try:
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            start = head.find(b"content-length: ") + 16
            length = int(head[start : head.find(b"\r\n", start)])
            await reader.readexactly(length)
            statuses.append(int(head[9:12]))
    finally:
        writer.close()
        await writer.wait_closed()
    return statuses


async def _blast(port: int, per_connection: Sequence[Sequence[bytes]]) -> float:
    """Send every connection's requests in order, all connections at once; the seconds."""
    started = time.perf_counter()
    results = await asyncio.gather(*(_connection(port, reqs) for reqs in per_connection))
    elapsed = time.perf_counter() - started
    bad = [s for statuses in results for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} requests failed, e.g. HTTP {bad[0]}")
    return elapsed


def _request(path: str, headers: dict[str, str], body: bytes, port: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{port}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- simulated gateways ---------------------------------------------------------------------


class _Gateway:
    def __init__(self, device_id: str, base_url: str) -> None:
        self.device_id = device_id
        self.base_url = base_url
        self.key = Ed25519PrivateKey.generate()
        self.seq, self.head = 0, GENESIS

    def signed(
        self, path: str, body: bytes, *, ctype: str, enc: str | None, tag: str
    ) -> dict[str, str]:
        headers = {"content-type": ctype, "content-digest": content_digest(body)}
        if enc:
            headers["content-encoding"] = enc
        headers.update(
            sign_request(
                self.key, "POST", self.base_url + path, headers, created=int(time.time()), tag=tag
            )
        )
        return headers

    def batch_request(self, series: list[SeriesData], port: int) -> tuple[bytes, int]:
        self.seq += 1
        batch = Batch(self.device_id, self.seq, self.head, "bench-boot", series=series)
        body = encode_batch(batch)
        self.head = batch_digest(body)
        wire = compress(body, "zstd")
        headers = self.signed(
            "/v1/batches", wire, ctype=MEDIA_TYPE, enc="zstd", tag="tierless-batch-v1"
        )
        return _request("/v1/batches", headers, wire, port), batch.reading_count()


def _large_series(device: int, seq: int) -> list[SeriesData]:
    out = []
    for s in reference_series(50, 200, seed=device):
        shift = seq * 200_000
        out.append(SeriesData(s.key, [t + shift for t in s.ts_ms], s.values, s.quality))
    return out


def _small_series(seq: int) -> list[SeriesData]:
    s = SeriesData(SeriesKey("power", "kW", "site-1", "hall-1", "melting", "electricity"))
    for j in range(10):
        s.append(1_790_000_000_000 + (seq * 10 + j) * 1000, 100.0 + j / 10)
    return [s]


# -- processes ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _process(args: list[str], ready: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "TIERLESS_ADMIN_TOKEN": ADMIN, "TIERLESS_READ_TOKEN": ADMIN + "-read"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stderr.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError(f"server did not start: {''.join(seen)}")
            seen.append(line)
            if f" {ready}" in f" {line}":
                break
    try:
        yield proc
    finally:
        proc.terminate()
        await proc.wait()


def _receiver(db: str, port: int, workers: int = 1) -> list[str]:
    return [
        "-m", "cloud", "serve", "--workers", str(workers), "--db", db, "--port", str(port),
        "--log-level", "warning",
        "--device-rate", "1000000", "--device-burst", "1000000", "--enroll-burst", "1000",
        "--limit-concurrency", "1000",
        "--token-dir", tempfile.gettempdir(),
    ]  # fmt: skip


async def _enroll(port: int, prefix: str) -> list[_Gateway]:
    base = f"http://127.0.0.1:{port}"
    gateways = [_Gateway(f"{prefix}-{i:02d}", base) for i in range(GATEWAYS)]
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for gw in gateways:
            r = await client.post(
                "/v1/admin/tokens",
                json={"device_id": gw.device_id, "ttl_s": 600},
                headers={"authorization": f"Bearer {ADMIN}"},
            )
            r.raise_for_status()
            body = (
                f'{{"token":"{r.json()["token"]}","device_id":"{gw.device_id}",'
                f'"public_key":"{b64url_encode(public_key_to_raw(gw.key.public_key()))}"}}'
            ).encode()
            headers = gw.signed(
                "/v1/enroll", body, ctype="application/json", enc=None, tag=ENROLL_TAG
            )
            (await client.post("/v1/enroll", content=body, headers=headers)).raise_for_status()
    return gateways


# -- measurements ---------------------------------------------------------------------------


async def _receiver_figures(
    db: str, size: Size
) -> tuple[list[float], list[float], list[list[tuple[int, int, float, int]]]]:
    port = _free_port()
    large_rates, small_rates = [], []
    raw_batches: list[list[tuple[int, int, float, int]]] = []
    async with _process(_receiver(db, port), "listening on"):
        large_gws = await _enroll(port, "gw-large")
        small_gws = await _enroll(port, "gw-small")
        for _ in range(size.repeats):
            per_conn, readings = [], 0
            for d, gw in enumerate(large_gws):
                reqs = []
                for _ in range(size.large_batches):
                    series = _large_series(d, gw.seq + 1)
                    req, n = gw.batch_request(series, port)
                    reqs.append(req)
                    readings += n
                    ids = {s.key: d * 50 + i + 1 for i, s in enumerate(series)}
                    raw_batches.append(
                        [
                            (ids[s.key], t, v, q)
                            for s in series
                            for t, v, q in zip(s.ts_ms, s.values, s.quality, strict=True)
                        ]
                    )
                per_conn.append(reqs)
            large_rates.append(readings / await _blast(port, per_conn))

            per_conn = [
                [
                    gw.batch_request(_small_series(gw.seq + 1), port)[0]
                    for _ in range(size.small_batches)
                ]
                for gw in small_gws
            ]
            small_rates.append(GATEWAYS * size.small_batches / await _blast(port, per_conn))
    return large_rates, small_rates, raw_batches


async def _small_rate_workers(db: str, size: Size, workers: int) -> float:
    """Small signed batches/s through `serve --workers N`, all workers together."""
    port = _free_port()
    rates = []
    async with _process(_receiver(db, port, workers), "listening on"):
        gws = await _enroll(port, "gw-small")
        for _ in range(size.repeats):
            per_conn = [
                [
                    gw.batch_request(_small_series(gw.seq + 1), port)[0]
                    for _ in range(size.small_batches)
                ]
                for gw in gws
            ]
            rates.append(GATEWAYS * size.small_batches / await _blast(port, per_conn))
    return statistics.median(rates)


async def _raw_limit(db: str, batches: list[list[tuple[int, int, float, int]]]) -> float:
    from cloud.storage.store import store_from_url

    store = store_from_url(db)
    await store.open()
    try:
        await store.migrate()
        # the same concurrency the receiver gets: 16 writers, one batch's rows per transaction
        queue = list(reversed(batches))

        async def writer() -> None:
            while queue:
                await store.bulk_insert_readings(queue.pop())

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(GATEWAYS)))
        return sum(len(b) for b in batches) / (time.perf_counter() - started)
    finally:
        await store.close()


async def _empty_post_rate(size: Size, processes: int = 1) -> float:
    """POSTs/s to the empty handler in `processes` processes sharing one port."""
    port = _free_port()
    body = b"x" * 64
    request = _request("/empty", {"content-type": "application/octet-stream"}, body, port)
    rates = []
    args = ["-m", "bench.cloud", "empty-server", str(port), str(processes)]
    async with AsyncExitStack() as servers:
        for _ in range(processes):
            await servers.enter_async_context(_process(args, "listening on"))
        for _ in range(size.repeats):
            elapsed = await _blast(port, [[request] * size.empty_posts for _ in range(GATEWAYS)])
            rates.append(GATEWAYS * size.empty_posts / elapsed)
    return statistics.median(rates)


@asynccontextmanager
async def _databases(kind: str, tmp: str) -> AsyncIterator[list[str] | None]:
    """Four fresh databases of one kind: for the receiver, the raw limit, 1 and 2 workers."""
    if kind == "sqlite":
        yield [f"sqlite:///{tmp}/{name}.db" for name in ("receiver", "raw", "w1", "w2")]
        return
    import psycopg

    try:
        admin = await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"bench cloud: PostgreSQL not reachable, skipped ({exc})", file=sys.stderr)
        yield None
        return
    schemas = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(4)]
    sep = "&" if "?" in PG_DSN else "?"
    try:
        for s in schemas:
            await admin.execute(f'CREATE SCHEMA "{s}"')
        yield [f"{PG_DSN}{sep}options=-csearch_path%3D{s}" for s in schemas]
    finally:
        for s in schemas:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        await admin.close()


async def _run(size: Size) -> dict[str, float]:
    out = {
        "cloud.empty_post_per_s": await _empty_post_rate(size),
        "cloud.empty_post_per_s.workers2": await _empty_post_rate(size, processes=2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("sqlite", "postgres"):
            async with _databases(kind, tmp) as dbs:
                if dbs is None:
                    continue
                large, small, raw_batches = await _receiver_figures(dbs[0], size)
                out[f"cloud.readings_per_s.{kind}"] = statistics.median(large)
                out[f"cloud.small_batches_per_s.{kind}"] = statistics.median(small)
                out[f"cloud.limit_readings_per_s.{kind}"] = await _raw_limit(dbs[1], raw_batches)
                if kind == "postgres":
                    one = await _small_rate_workers(dbs[2], size, 1)
                    two = await _small_rate_workers(dbs[3], size, 2)
                    out["cloud.small_batches_per_s.postgres.workers1"] = one
                    out["cloud.small_batches_per_s.postgres.workers2"] = two
                    out["cloud.batches_per_s_per_worker"] = two / 2
    return out


def run(size: str) -> dict[str, float]:
    """The `cloud.*` figures for BENCH_SIZE `size` ("small" or "full")."""
    return asyncio.run(_run(SIZES[size]))


# -- driver comparison (docs/cloud-storage-choice.md): python -m bench.cloud drivers -----------
# Needs `pip install asyncpg`; not part of `run()`, asyncpg is not a project dependency.

_DRIVER_DDL = """CREATE TABLE device (id text PRIMARY KEY, head_seq bigint NOT NULL);
CREATE TABLE batch (device_id text, seq bigint, digest bytea, PRIMARY KEY (device_id, seq));
CREATE TABLE reading (series_id bigint NOT NULL, ts_ms bigint NOT NULL,
    value double precision NOT NULL, quality smallint NOT NULL);
CREATE INDEX ON reading (series_id, ts_ms);
INSERT INTO device SELECT 'd' || g, 0 FROM generate_series(0, 15) g;"""
_ROWS = [(i % 50 + 1, 1_790_000_000_000 + i, i * 0.37, 0) for i in range(10_000)]
_TX = 200


async def _psycopg_patterns(dsn: str) -> tuple[float, float]:
    import psycopg

    conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(8)]
    idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)

    async def small(d: int) -> None:
        for n in range(1, _TX + 1):
            c = await idle.get()
            cur = c.cursor()
            async with c.pipeline():
                await cur.execute("BEGIN")
                await cur.execute("SELECT head_seq FROM device WHERE id=%s FOR UPDATE", (f"d{d}",))
            await cur.fetchone()
            async with c.pipeline():
                await cur.execute("INSERT INTO batch VALUES (%s,%s,%s)", (f"d{d}", n, bytes(32)))
                await cur.executemany("INSERT INTO reading VALUES (%s,%s,%s,%s)", _ROWS[:10])
                await cur.execute("UPDATE device SET head_seq=%s WHERE id=%s", (n, f"d{d}"))
                await cur.execute("COMMIT")
            idle.put_nowait(c)

    async def bulk(c: psycopg.AsyncConnection[Any]) -> None:
        for _ in range(4):
            async with c.transaction(), c.cursor().copy("COPY reading FROM STDIN") as cp:
                await cp.write("".join(f"{a}\t{b}\t{v!r}\t{q}\n" for a, b, v, q in _ROWS))

    t = time.perf_counter()
    await asyncio.gather(*(small(d) for d in range(GATEWAYS)))
    small_rate = GATEWAYS * _TX / (time.perf_counter() - t)
    t = time.perf_counter()
    await asyncio.gather(*(bulk(c) for c in conns))
    bulk_rate = 8 * 4 * len(_ROWS) / (time.perf_counter() - t)
    for c in conns:
        await c.close()
    return small_rate, bulk_rate


async def _asyncpg_patterns(dsn: str) -> tuple[float, float]:
    asyncpg: Any = importlib.import_module("asyncpg")
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8)

    async def small(d: int) -> None:
        for n in range(1, _TX + 1):
            async with pool.acquire() as c, c.transaction():
                await c.fetchval("SELECT head_seq FROM device WHERE id=$1 FOR UPDATE", f"d{d}")
                await c.execute("INSERT INTO batch VALUES ($1,$2,$3)", f"d{d}", n, bytes(32))
                await c.executemany("INSERT INTO reading VALUES ($1,$2,$3,$4)", _ROWS[:10])
                await c.execute("UPDATE device SET head_seq=$1 WHERE id=$2", n, f"d{d}")

    async def bulk() -> None:
        async with pool.acquire() as c:
            for _ in range(4):
                async with c.transaction():
                    await c.copy_records_to_table("reading", records=_ROWS)

    t = time.perf_counter()
    await asyncio.gather(*(small(d) for d in range(GATEWAYS)))
    small_rate = GATEWAYS * _TX / (time.perf_counter() - t)
    t = time.perf_counter()
    await asyncio.gather(*(bulk() for _ in range(8)))
    bulk_rate = 8 * 4 * len(_ROWS) / (time.perf_counter() - t)
    await pool.close()
    return small_rate, bulk_rate


async def _drivers(repeats: int = 3) -> None:
    import psycopg

    results: dict[str, list[tuple[float, float]]] = {"psycopg": [], "asyncpg": []}
    for _ in range(repeats):
        for name, patterns in (("psycopg", _psycopg_patterns), ("asyncpg", _asyncpg_patterns)):
            schema = f"drv_{uuid.uuid4().hex[:10]}"
            async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as admin:
                await admin.execute(f'CREATE SCHEMA "{schema}"')
                try:
                    sep = "&" if "?" in PG_DSN else "?"
                    dsn = f"{PG_DSN}{sep}options=-csearch_path%3D{schema}"
                    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
                        await c.execute(_DRIVER_DDL)
                    results[name].append(await patterns(dsn))
                finally:
                    await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    for name, runs in results.items():
        small = statistics.median(r[0] for r in runs)
        bulk = statistics.median(r[1] for r in runs)
        print(f"{name:8} small tx/s {small:10,.0f}   COPY rows/s {bulk:12,.0f}")


def _serve_empty(port: int, processes: int) -> None:
    """The HTTP limit: the receiver's stack (uvicorn, h11, Starlette) with an empty handler; with
    `processes` > 1, one of that many on the port, listening as `serve --workers` does."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def empty(request: Request) -> Response:
        await request.body()
        return Response(b'{"status":"ok"}', media_type="application/json")

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            print("listening on", port, file=sys.stderr, flush=True)

    from cloud.server import tune_gc
    from cloud.workers import bind_shared

    app = Starlette(routes=[Route("/empty", empty, methods=["POST"])])
    config = uvicorn.Config(
        app,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
        limit_concurrency=1000,
    )
    tune_gc()  # as `edge-cloud serve` does: the same process settings on both sides
    Server(config).run(sockets=bind_shared("127.0.0.1", port, 1) if processes > 1 else None)


if __name__ == "__main__":
    if sys.argv[1:2] == ["empty-server"]:
        _serve_empty(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    elif sys.argv[1:2] == ["drivers"]:
        asyncio.run(_drivers())
    else:
        for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "small").items():
            print(f"{key:40} {value:14,.0f}")
