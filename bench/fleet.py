"""Fleet simulator: `run(size) -> {"fleet.…": float}` (keys in docs/benchmarks.md).

Thousands of simulated gateways against `edge-cloud serve --workers N` on one PostgreSQL on this
machine. Each gateway has its own Ed25519 key and hash chain and is enrolled in bulk
(`cloud.storage.postgres_bulk`: what the enrolment API would leave behind, in a second). Every
request is built, compressed and signed before the clock starts; the client is raw asyncio
HTTP/1.1 over a pool of keep-alive connections in this process (httpx manages ~570 requests/s
here, a tenth of what this does).

Two modes, one after the other on the same store and chains:
- **realistic**: each gateway sends a batch every 10-60 s (its own period, +-10 % jitter) of
  10-500 readings over 1-3 series; 5 % go offline for a stretch of the run and then catch up
  with their backlog back to back; 3 % of batches are sent twice (the answer was "lost"), so
  the receiver must answer "duplicate". Reported: `fleet.batches_per_s`, `fleet.readings_per_s`
  (offered load the receivers kept up with), `fleet.p50_ms`, `fleet.p99_ms` (write to last byte
  of the answer), receiver and database CPU (cores busy over the run);
- **flat-out**: every gateway sends its next batches as fast as the connection pool allows:
  `fleet.max_batches_per_s`, `fleet.max_readings_per_s`, `fleet.max_p99_ms`.
Then the exactly-once check, for every gateway: batches and readings stored against what it sent
(`fleet.lost`, `fleet.duplicates`: both must be 0, or the suite fails), and the bytes on disk
per reading (readings with their indexes; roll-ups separately).

Knobs: BENCH_FLEET_GATEWAYS (small 200, full 10,000), BENCH_FLEET_WORKERS (2),
BENCH_FLEET_CONNECTIONS (64), BENCH_FLEET_SECONDS (realistic mode: small 20, full 90 s); the
flat-out mode sends 3 batches per gateway (small), 1 (full).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.cloud import PG_DSN, _free_port, _process, _request
from cloud.storage.postgres import PostgresStore
from cloud.storage.postgres_bulk import bulk_enroll
from wire.codec import MEDIA_TYPE, batch_digest, encode_batch
from wire.compression import compress
from wire.digest import content_digest
from wire.keys import key_id, public_key_to_raw
from wire.models import GENESIS, Batch, SeriesData, SeriesKey
from wire.signatures import sign_request

BASE_TS = 1_790_000_000_000
SIZES = {"small": (200, 20.0, 3), "full": (10_000, 90.0, 1)}  # gateways, seconds, flat batches
OFFLINE_SHARE, RETRY_SHARE = 0.05, 0.03


@dataclass
class _Gw:
    device_id: str
    key: Ed25519PrivateKey
    base_url: str
    seq: int = 0
    head: bytes = GENESIS
    next_ts: int = BASE_TS
    sent: dict[int, int] = field(default_factory=dict)  # seq -> readings

    def batch(self, rng: random.Random, port: int) -> tuple[bytes, int]:
        """The next batch of the chain as a signed request, and its reading count."""
        self.seq += 1
        n = rng.randint(10, 500)
        n_series = rng.randint(1, 3)
        series = []
        per = -(-n // n_series)
        for i in range(n_series):
            s = SeriesData(SeriesKey(f"m{i}", "kW", "site-1", "hall-1", "melting", "electricity"))
            for j in range(min(per, n - i * per)):
                s.append(self.next_ts + j * 1000, 100.0 + j / 10)
            series.append(s)
        self.next_ts += per * 1000
        batch = Batch(self.device_id, self.seq, self.head, "fleet-boot", series=series)
        body = encode_batch(batch)
        self.head = batch_digest(body)
        wire = compress(body, "zstd")
        headers = {
            "content-type": MEDIA_TYPE,
            "content-digest": content_digest(wire),
            "content-encoding": "zstd",
        }
        headers.update(
            sign_request(
                self.key,
                "POST",
                self.base_url + "/v1/batches",
                headers,
                created=int(time.time()),
                tag="tierless-batch-v1",
            )
        )
        count = batch.reading_count()
        self.sent[self.seq] = count
        return _request("/v1/batches", headers, wire, port), count


# -- the client: a pool of raw keep-alive connections -----------------------------------------


class _Pool:
    def __init__(self, port: int, size: int) -> None:
        self.port, self.size = port, size
        self._free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.latencies_ms: list[float] = []
        self.answers: Counter[str] = Counter()

    async def open(self) -> None:
        for _ in range(self.size):
            self._free.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))

    async def close(self) -> None:
        while not self._free.empty():
            _, writer = self._free.get_nowait()
            writer.close()
            await writer.wait_closed()

    async def send(self, request: bytes) -> None:
        """Send until answered 200 (a 503 or a broken connection is retried: the same bytes,
        which the store must then answer as stored or duplicate)."""
        while True:
            reader, writer = await self._free.get()
            try:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                start = head.find(b"content-length: ") + 16
                body = await reader.readexactly(int(head[start : head.find(b"\r\n", start)]))
                elapsed = (time.perf_counter() - started) * 1000
            except (OSError, asyncio.IncompleteReadError):
                writer.close()
                self.answers["reconnect"] += 1
                self._free.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))
                continue
            status = int(head[9:12])
            if status == 408 or b"connection: close" in head.lower():
                # an idle connection the receiver timed out (its 408 was waiting in the socket):
                # a gateway would open a new one
                writer.close()
                self.answers["reconnect"] += 1
                self._free.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))
                if status == 408:
                    continue
            else:
                self._free.put_nowait((reader, writer))
            if status == 503:
                self.answers["503"] += 1
                await asyncio.sleep(0.05)
                continue
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            self.latencies_ms.append(elapsed)
            self.answers["stored" if b'"stored"' in body else "duplicate"] += 1
            return


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# -- CPU of the receivers and of PostgreSQL ---------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _postgres_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


class _Cpu:
    """CPU seconds of the receiver (supervisor and workers) and of every postgres process."""

    def __init__(self, receiver_pid: int) -> None:
        self.pid = receiver_pid

    def sample(self) -> tuple[dict[int, float], dict[int, float]]:
        receiver = [self.pid, *_children(self.pid)]
        return {p: _cpu_s(p) for p in receiver}, {p: _cpu_s(p) for p in _postgres_pids()}

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(v - before.get(p, 0.0) for p, v in after.items())


# -- the modes --------------------------------------------------------------------------------


async def _realistic(
    gws: list[_Gw], pool: _Pool, port: int, seconds: float, rng: random.Random
) -> tuple[int, int]:
    """Schedule, pre-sign, then play: (batches, readings) sent, retried copies not counted."""
    plan: list[tuple[_Gw, list[tuple[float, bytes, bool]]]] = []
    batches = readings = 0
    for gw in gws:
        period = rng.uniform(10, 60)
        t = rng.uniform(0, period)
        offline = None
        if rng.random() < OFFLINE_SHARE:
            a = rng.uniform(0.1, 0.5) * seconds
            offline = (a, a + rng.uniform(0.2, 0.4) * seconds)
        sends = []
        while t < seconds:
            request, n = gw.batch(rng, port)
            at = offline[1] if offline and offline[0] <= t < offline[1] else t
            sends.append((at, request, rng.random() < RETRY_SHARE))
            batches, readings = batches + 1, readings + n
            t += period * rng.uniform(0.9, 1.1)
        plan.append((gw, sends))
    started = time.perf_counter()

    async def play(sends: list[tuple[float, bytes, bool]]) -> None:
        for at, request, twice in sends:
            wait = started + at - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await pool.send(request)
            if twice:
                await pool.send(request)

    await asyncio.gather(*(play(sends) for _, sends in plan))
    return batches, readings


async def _flat_out(
    gws: list[_Gw], pool: _Pool, port: int, per_gateway: int, rng: random.Random
) -> tuple[int, int, float]:
    work = [[gw.batch(rng, port) for _ in range(per_gateway)] for gw in gws]
    started = time.perf_counter()

    async def play(requests: list[tuple[bytes, int]]) -> None:
        for request, _ in requests:
            await pool.send(request)

    await asyncio.gather(*(play(r) for r in work))
    elapsed = time.perf_counter() - started
    return len(gws) * per_gateway, sum(n for r in work for _, n in r), elapsed


# -- the check --------------------------------------------------------------------------------


async def _exactly_once(dsn: str, gws: list[_Gw]) -> tuple[int, int]:
    """(lost, duplicated) readings over every gateway: stored against sent."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT s.device_id, count(*) FROM reading r JOIN series s ON s.id = r.series_id"
            " GROUP BY s.device_id"
        )
        stored: dict[str, int] = dict(await cur.fetchall())
        cur = await conn.execute("SELECT device_id, count(*), max(seq) FROM batch GROUP BY 1")
        batches = {d: (int(n), int(m)) for d, n, m in await cur.fetchall()}
    lost = duplicated = 0
    for gw in gws:
        want = sum(gw.sent.values())
        got = int(stored.get(gw.device_id, 0))
        lost += max(0, want - got)
        duplicated += max(0, got - want)
        if batches.get(gw.device_id, (0, 0)) != (len(gw.sent), gw.seq):
            lost += 1  # a batch missing from the chain counts even if its readings add up
    return lost, duplicated


async def _disk(dsn: str) -> tuple[float, float]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            "        WHERE inhparent = 'reading'::regclass),"
            " pg_total_relation_size('reading_hourly') + pg_total_relation_size('reading_daily'),"
            " (SELECT count(*) FROM reading)"
        )
        row = await cur.fetchone()
    assert row is not None
    raw, rollups, n = (float(x or 0) for x in row)
    return raw / max(n, 1), rollups / max(n, 1)


@asynccontextmanager
async def _schema() -> AsyncIterator[str]:
    admin = await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True, connect_timeout=3)
    schema = f"fleet_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in PG_DSN else "?"
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{PG_DSN}{sep}options=-csearch_path%3D{schema}"
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def _receiver_args(db: str, port: int, workers: int) -> list[str]:
    return [
        "-m", "cloud", "serve", "--db", db, "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--device-rate", "1000000", "--device-burst", "1000000",
        "--limit-concurrency", "2000", "--max-waiting-per-address", "100000",
        "--max-requests-per-address", "100000", "--keep-alive", "120", "--head-timeout", "60",
        "--token-dir", tempfile.gettempdir(),
    ]  # fmt: skip


async def _run(size: str) -> dict[str, float]:
    n_default, seconds_default, per_gateway = SIZES[size]
    n = int(os.environ.get("BENCH_FLEET_GATEWAYS", n_default))
    seconds = float(os.environ.get("BENCH_FLEET_SECONDS", seconds_default))
    workers = int(os.environ.get("BENCH_FLEET_WORKERS", 2))
    connections = int(os.environ.get("BENCH_FLEET_CONNECTIONS", 64))
    rng = random.Random(18)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    out: dict[str, float] = {"fleet.gateways": float(n), "fleet.workers": float(workers)}
    async with _schema() as dsn:
        store = PostgresStore(dsn, pool_size=1)  # the schema, then the enrolment, then serve
        await store.open()
        try:
            await store.migrate()
        finally:
            await store.close()
        started = time.perf_counter()
        gws = [_Gw(f"fleet-{i:05d}", Ed25519PrivateKey.generate(), base) for i in range(n)]
        await bulk_enroll(
            dsn,
            [(g.device_id, key_id(g.key.public_key()), public_key_to_raw(g.key.public_key()))
             for g in gws],
            int(time.time() * 1000),
        )  # fmt: skip
        out["fleet.enrol_s"] = time.perf_counter() - started
        async with _process(_receiver_args(dsn, port, workers), "listening on") as proc:
            pool = _Pool(port, connections)
            await pool.open()
            try:
                cpu = _Cpu(proc.pid)
                before = cpu.sample()
                t0 = time.perf_counter()
                batches, readings = await _realistic(gws, pool, port, seconds, rng)
                wall = time.perf_counter() - t0
                after = cpu.sample()
                out["fleet.offered_batches_per_s"] = batches / seconds  # what the plan asked
                out["fleet.batches_per_s"] = batches / wall  # what the receivers kept up with
                out["fleet.readings_per_s"] = readings / wall
                out["fleet.p50_ms"] = statistics.median(pool.latencies_ms or [0.0])
                out["fleet.p99_ms"] = _percentile(pool.latencies_ms, 0.99)
                out["fleet.receiver_cores"] = _Cpu.used(before[0], after[0]) / wall
                out["fleet.db_cores"] = _Cpu.used(before[1], after[1]) / wall
                out["fleet.duplicate_answers"] = float(pool.answers["duplicate"])

                pool.latencies_ms.clear()
                before = cpu.sample()
                b, r, elapsed = await _flat_out(gws, pool, port, per_gateway, rng)
                after = cpu.sample()
                out["fleet.max_batches_per_s"] = b / elapsed
                out["fleet.max_readings_per_s"] = r / elapsed
                out["fleet.max_p99_ms"] = _percentile(pool.latencies_ms, 0.99)
                out["fleet.max_receiver_cores"] = _Cpu.used(before[0], after[0]) / elapsed
                out["fleet.max_db_cores"] = _Cpu.used(before[1], after[1]) / elapsed
            finally:
                await pool.close()
        lost, duplicated = await _exactly_once(dsn, gws)
        out["fleet.lost"], out["fleet.duplicates"] = float(lost), float(duplicated)
        out["fleet.bytes_per_reading"], out["fleet.rollup_bytes_per_reading"] = await _disk(dsn)
    if lost or duplicated:
        raise RuntimeError(f"exactly-once broken: {lost} lost, {duplicated} duplicated")
    return out


def run(size: str) -> dict[str, float]:
    """The `fleet.*` figures for BENCH_SIZE `size` ("small" or "full"); none (and a note) when
    PostgreSQL is not reachable, like the cloud suite's PostgreSQL half."""
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        print(f"bench fleet: PostgreSQL not reachable, skipped ({exc})", file=sys.stderr)
        return {}
    return asyncio.run(_run(size))


if __name__ == "__main__":
    for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "small").items():
        print(f"{key:34} {value:14,.2f}")
