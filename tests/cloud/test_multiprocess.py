"""Two receiver processes on one PostgreSQL schema, hit with many copies of the same batches.

Like two replicas behind a load balancer: both are configured with the same public URL, every
copy of a batch is sent to one of them at random, all at once. Each batch and each reading must
be stored exactly once; the other copies are acknowledged as duplicates.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.cloud.helpers import Frozen, Gateway, free_port, spawn_receiver

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

PUBLIC = "https://ingest.example.com"
ADMIN = "admin-token-multiprocess"
DEVICES, BATCHES, COPIES, READINGS = 4, 8, 6, 60


async def test_two_receivers_store_each_batch_and_reading_once(pg_dsn: str) -> None:
    ports = [free_port(), free_port()]
    env = {"TIERLESS_ADMIN_TOKEN": ADMIN, "TIERLESS_READ_TOKEN": ADMIN + "-read"}
    args = ["serve", "--db", pg_dsn, "--public-url", PUBLIC, "--log-level", "warning"]
    args += ["--device-burst", "100000"]
    async with (
        spawn_receiver([*args, "--port", str(ports[0])], env),
        spawn_receiver([*args, "--port", str(ports[1])], env),
    ):
        clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}") for p in ports]
        try:
            await _run(clients)
        finally:
            for c in clients:
                await c.aclose()

    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        rows = {}
        for sql in (
            "SELECT count(*) FROM batch",
            "SELECT count(*) FROM reading",
            "SELECT count(*) FROM (SELECT DISTINCT series_id, ts_ms FROM reading) d",
            "SELECT count(*) FROM series",
            "SELECT sum(head_seq) FROM device",
        ):
            cur = await conn.execute(sql)
            row = await cur.fetchone()
            assert row is not None
            rows[sql] = int(row[0])
    assert list(rows.values()) == [
        DEVICES * BATCHES,
        DEVICES * BATCHES * READINGS,
        DEVICES * BATCHES * READINGS,
        DEVICES * 3,
        DEVICES * BATCHES,
    ]


async def test_two_workers_on_one_port_store_each_batch_once(pg_dsn: str) -> None:
    """`serve --workers 2`: one port, two processes (SO_REUSEPORT); both take connections and
    together store each batch exactly once."""
    port = free_port()
    env = {"TIERLESS_ADMIN_TOKEN": ADMIN, "TIERLESS_READ_TOKEN": ADMIN + "-read"}
    args = ["serve", "--db", pg_dsn, "--public-url", PUBLIC, "--log-level", "warning"]
    args += ["--device-burst", "100000", "--port", str(port), "--workers", "2"]
    async with spawn_receiver(args, env):
        # separate pools: many connections, spread over both workers by the kernel
        clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") for _ in range(2)]
        try:
            await _run(clients)
            per_worker = await _stored_per_worker(port)
        finally:
            for c in clients:
                await c.aclose()
    assert set(per_worker) == {"1/2", "2/2"}
    assert all(n > 0 for n in per_worker.values()), per_worker
    assert sum(per_worker.values()) == DEVICES * BATCHES
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute("SELECT count(*), sum(reading_count) FROM batch")
        assert await cur.fetchone() == (DEVICES * BATCHES, DEVICES * BATCHES * READINGS)
        # worker 1's maintenance task made this month's partition and the next three
        cur = await conn.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'reading'::regclass AND c.relname >= 'reading_p'"
            " || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')"
        )
        assert (await cur.fetchone() or (0,))[0] >= 4


async def test_a_worker_that_dies_stops_the_others(pg_dsn: str) -> None:
    port = free_port()
    env = {"TIERLESS_ADMIN_TOKEN": ADMIN, "TIERLESS_READ_TOKEN": ADMIN + "-read"}
    args = ["serve", "--db", pg_dsn, "--port", str(port), "--workers", "2"]
    async with spawn_receiver(args, env, expect_exit=(1,)) as proc:
        # both workers have said "listening" once the second line is there; the first is enough
        # for spawn_receiver, so look at the supervisor's children
        children = await _children(proc.pid, 2)
        os.kill(children[0], signal.SIGKILL)
        async with asyncio.timeout(30):
            assert await proc.wait() == 1
    assert not [p for p in children if _alive(p)]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _children_now(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def _children(pid: int, n: int) -> list[int]:
    found: list[int] = []
    async with asyncio.timeout(30):
        while len(found) < n:  # another process's state: nothing to wait on but the clock
            found = _children_now(pid)
            await asyncio.sleep(0.05)
    return found


async def _stored_per_worker(port: int) -> dict[str, int]:
    """Batches stored by each worker, from its own /metrics (a fresh connection each time until
    both workers have answered, or 200 tries)."""
    found: dict[str, int] = {}
    for _ in range(200):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            text = (await client.get("/metrics")).text
        worker = re.search(r'tierless_worker_info\{worker="([^"]+)"\} 1', text)
        stored = re.search(r'tierless_batches_total\{outcome="stored"\} (\S+)', text)
        assert worker is not None, text
        found[worker[1]] = int(float(stored[1])) if stored else 0
        if len(found) == 2:
            break
    return found


async def _run(clients: list[httpx.AsyncClient]) -> None:
    rng = random.Random(7)
    gateways = []
    for d in range(DEVICES):
        r = await clients[d % 2].post(
            "/v1/admin/tokens",
            json={"device_id": f"gw-{d}", "ttl_s": 60},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        gw = Gateway(f"gw-{d}", base_url=PUBLIC)
        headers, body = gw.enroll_request(r.json()["token"])
        enrolled = await clients[(d + 1) % 2].post("/v1/enroll", content=body, headers=headers)
        assert enrolled.status_code == 201
        gateways.append(gw)

    acked = {gw.device_id: [asyncio.Event() for _ in range(BATCHES + 1)] for gw in gateways}
    statuses: Counter[str] = Counter()
    stored: Counter[tuple[str, int]] = Counter()

    async def copy(gw: Gateway, frozen: Frozen) -> None:
        client = rng.choice(clients)
        while True:
            headers, body = gw.batch_request(frozen, encoding=rng.choice(["gzip", "zstd"]))
            r = await client.post("/v1/batches", content=body, headers=headers)
            answer = r.json()
            if r.status_code == 409 and answer["error"] == "seq_gap":
                # an earlier batch is still in flight: wait for its acknowledgement, then retry
                await acked[gw.device_id][frozen.seq - 1].wait()
                continue
            if r.status_code == 503:
                # the store timed out on a lock (copies of one batch race in two receivers, and
                # a loaded machine is slow): a retryable answer, retried as a gateway does
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                continue
            assert r.status_code == 200, answer
            statuses[answer["status"]] += 1
            if answer["status"] == "stored":
                stored[(gw.device_id, frozen.seq)] += 1
            acked[gw.device_id][frozen.seq].set()
            return

    tasks = []
    for gw in gateways:
        acked[gw.device_id][0].set()
        for _ in range(BATCHES):
            frozen = gw.next_batch(n_readings=READINGS, n_series=3)
            tasks += [copy(gw, frozen) for _ in range(COPIES)]
    rng.shuffle(tasks)
    async with asyncio.timeout(60):
        await asyncio.gather(*tasks)
    assert statuses == {"stored": DEVICES * BATCHES, "duplicate": DEVICES * BATCHES * (COPIES - 1)}
    assert set(stored.values()) == {1}
