"""PostgreSQL migration 9 while another receiver goes on ingesting: a batch whose insert comes
during the migration must be rolled up by the new trigger (its counter columns right), not by
the old one against the new columns after the commit. Found in review: without the migration's
`LOCK TABLE reading`, the hours below read as a rising hour 0 (the drop unseen) and an empty
hour 1 (`u_n = 0`), and the counter figures from the roll-ups differed from the raw ones."""

from __future__ import annotations

import asyncio
import threading
import time
from zoneinfo import ZoneInfo

import psycopg

from cloud.apps import figures
from cloud.apps.figures import CounterPolicy, Interval
from cloud.storage.migrations import migrations
from cloud.storage.postgres import PostgresStore

H = 3_600_000
T0 = 1_750_000_000_000 // H * H


def test_a_batch_stored_during_migration_9_gets_its_counter_columns(pg_dsn: str) -> None:
    ms = migrations("postgres")
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for m in ms:
            if m.version <= 8:
                with c.transaction():
                    c.execute(m.sql.encode())
        with c.transaction():  # hour 0: a clean rising hour, stored before the migration
            c.cursor().executemany(
                "INSERT INTO reading (series_id, ts_ms, value, quality) VALUES (1, %s, %s, 0)",
                [(T0 + i * 60_000, 100.0 + i) for i in range(0, 60, 10)],
            )
    m9 = next(m for m in ms if m.version == 9)
    mig = psycopg.connect(pg_dsn)  # one transaction, as PostgresStore.migrate runs it
    mig.execute(m9.sql.encode())  # not committed yet
    done: dict[str, bool] = {}
    # a drop inside hour 0, and a whole hour 1 with one BAD reading in it
    rows = (
        [(T0 + 25 * 60_000, 5.0, 0)]
        + [(T0 + H + i * 60_000, 200.0 + i, 0) for i in range(0, 60, 5)]
        + [(T0 + H + 7 * 60_000, 0.0, 2)]
    )

    def batch() -> None:  # another receiver's batch, with the receiver's session settings
        with psycopg.connect(pg_dsn) as b:
            b.execute("SET lock_timeout = 5000; SET statement_timeout = 30000")
            b.execute(
                "INSERT INTO reading (series_id, ts_ms, value, quality) SELECT 1, t, v, q"
                " FROM unnest(%s::bigint[], %s::float8[], %s::int[]) AS x(t, v, q)",
                [list(col) for col in zip(*rows, strict=True)],
            )
            b.commit()
            done["ok"] = True

    thread = threading.Thread(target=batch)
    thread.start()
    time.sleep(0.7)  # the batch now waits on the migration's locks
    mig.commit()
    mig.close()
    thread.join()
    assert done.get("ok")
    with psycopg.connect(pg_dsn) as c:
        got = {
            int(r[0]) - T0: r[1:]
            for r in c.execute(
                "SELECT bucket_ms, n, u_n, x_n, u_rising FROM reading_hourly"
                " WHERE series_id = 1 ORDER BY bucket_ms"
            ).fetchall()
        }
    assert got[0][:2] == (7, 7), got  # n, u_n: the 6 stored before and the drop
    assert got[0][3] is False, got  # the drop at :25 makes hour 0 not rising
    assert got[H][1:3] == (12, 1), got  # hour 1: 12 usable, 1 BAD
    raw, rolled = asyncio.run(_figures(pg_dsn))
    assert rolled[1:] == raw[1:], (raw, rolled)


async def _figures(dsn: str) -> tuple[tuple[object, ...], ...]:
    """The counter figures of hours 0-2 from raw readings and from the roll-ups."""
    store = PostgresStore(dsn, pool_size=2)
    await store.open()
    try:
        policy = CounterPolicy()
        (raw_chunk,) = [
            c
            async for c in store.series_windows(
                [1],
                T0,
                T0 + 3 * H,
                context_ms=policy.context_ms,
                budget_rows=10**6,
                probe_after=False,
            )
        ]
        (cw_chunk,) = [
            c
            async for c in store.counter_windows(
                [1],
                T0,
                T0 + 3 * H,
                excursion_ms=policy.excursion_ms,
                context_ms=policy.context_ms,
                budget_rows=10**6,
                probe_after=False,
            )
        ]
        grid = figures.grid(T0, T0 + 3 * H, Interval.HOUR, ZoneInfo("UTC"))
        out = []
        for rows in (raw_chunk[0][1], cw_chunk[0].rows):
            cleaned = figures.clean_counter(rows, policy)
            f = figures.attribute(
                cleaned, grid, until_ms=T0 + 2 * H, max_step_ms=policy.max_step_ms
            )
            out.append(
                (len(rows), cleaned.excursions, f.values, [str(f.status(k)) for k in range(3)])
            )
        return tuple(out)
    finally:
        await store.close()
