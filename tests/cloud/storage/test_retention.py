"""Retention and partition maintenance: what is dropped or deleted is exactly what is past its
medium's retention, the roll-ups keep the history, partitions exist ahead of time, and migration
0008 converts an unpartitioned table without losing a row."""

from __future__ import annotations

import psycopg
import pytest

from cloud.errors import ConfigError
from cloud.storage.batches import Outcome
from cloud.storage.migrations import migrations
from cloud.storage.postgres import PostgresStore
from cloud.storage.reads import Agg, SeriesFilter
from cloud.storage.retention import Retention, parse_retention
from cloud.storage.rollups import DAY_MS, HOUR_MS
from cloud.storage.store import Store
from tests.cloud.helpers import Frozen, Gateway, register
from wire.codec import batch_digest, encode_batch
from wire.models import GENESIS, Batch, ClockReport, ClockState, SeriesData, SeriesKey

NOW = 1_800_000_000_000 // DAY_MS * DAY_MS  # 2027-01-15 00:00 UTC
AGES_DAYS = [1, 20, 50, 120, 400]  # one reading per series at each age
MEDIA = ["electricity", "water", "gas"]


def _batch(gw: Gateway, seq: int, prev: bytes) -> Frozen:
    series = []
    for medium in MEDIA:
        s = SeriesData(SeriesKey("m", "kW", "site", "hall", "proc", medium))
        for age in sorted(AGES_DAYS, reverse=True):
            s.append(NOW - age * DAY_MS, float(age))
        series.append(s)
    batch = Batch(
        gw.device_id, seq, prev, "boot", series=series, clock=ClockReport(ClockState.SYNCED, 0)
    )
    body = encode_batch(batch)
    return Frozen(batch, body, batch_digest(body))


async def _fill(store: Store) -> dict[str, int]:
    gw = Gateway("gw-ret")
    await register(store, gw)
    frozen = _batch(gw, 1, GENESIS)
    assert (await store.store_batch(gw.meta(frozen), frozen.batch)).outcome is Outcome.STORED
    return {s.medium: s.series_id for s in await store.list_series(SeriesFilter())}


async def _ages(store: Store, sid: int) -> list[int]:
    points = await store.readings(sid, 0, 2**62, 100)
    return sorted(int(p.value) for p in points)


async def test_retention_deletes_only_what_is_past_its_medium(store: Store) -> None:
    ids = await _fill(store)
    retention = parse_retention("water=30, *=100")
    report = await store.maintain(NOW, retention)
    assert report.rows_deleted == 2 * 2 + 3  # electricity, gas: 120 and 400; water: 50, 120, 400
    assert await _ages(store, ids["electricity"]) == [1, 20, 50]
    assert await _ages(store, ids["gas"]) == [1, 20, 50]
    assert await _ages(store, ids["water"]) == [1, 20]
    # the roll-ups keep the whole history: a daily read over everything still sees 5 readings
    for sid in ids.values():
        days = await store.buckets(sid, NOW - 500 * DAY_MS, NOW, DAY_MS, Agg.COUNT)
        assert [p.count for p in days] == [1] * 5
    assert (await store.maintain(NOW, retention)).rows_deleted == 0


async def test_no_default_keeps_unnamed_media_forever(store: Store) -> None:
    ids = await _fill(store)
    await store.maintain(NOW, parse_retention("gas=10"))
    assert await _ages(store, ids["electricity"]) == AGES_DAYS
    assert await _ages(store, ids["gas"]) == [1]


def test_parse_retention() -> None:
    assert parse_retention("") == Retention()
    r = parse_retention("water=90,electricity=400,*=730")
    assert (r.by_medium, r.default_days, r.longest_days) == (
        (("electricity", 400), ("water", 90)),
        730,
        730,
    )
    assert parse_retention("water=90").longest_days is None
    with pytest.raises(ConfigError) as err:
        parse_retention("water=0,gas,=5,water=1,water=2")
    assert len(err.value.problems) == 4
    assert "item 1 ('water=0')" in err.value.problems[0]


@pytest.mark.postgres
async def test_partitions_ahead_and_whole_partitions_dropped(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, pool_size=2)
    await store.open()
    try:
        await store.migrate()
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute(  # the months of the old readings, as a receiver then made them
                "SELECT ensure_reading_partitions(%s, %s)", (NOW - 450 * DAY_MS, NOW - 40 * DAY_MS)
            )
        ids = await _fill(store)
        report = await store.maintain(NOW, Retention((("water", 30),), default_days=100))
        # up to three months ahead (last month was made above); today's readings move out of the
        # default partition into their new month
        assert report.partitions_created == [
            "reading_p202701",
            "reading_p202702",
            "reading_p202703",
            "reading_p202704",
        ]
        # every month that ends 100 days before now goes whole: 2025-10 .. 2026-09
        assert report.partitions_dropped == [
            f"reading_p{y}{m:02d}" for y, m in [(2025, 10), (2025, 11), (2025, 12)]
        ] + [f"reading_p2026{m:02d}" for m in range(1, 10)]
        assert report.rows_deleted == 1  # water's 50-day-old reading, in a partition kept
        assert await _ages(store, ids["electricity"]) == [1, 20, 50]
        assert await _ages(store, ids["water"]) == [1, 20]
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            cur = await conn.execute(
                "SELECT c.relname, count(r.*) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " LEFT JOIN reading r ON r.tableoid = c.oid"
                " WHERE i.inhparent = 'reading'::regclass GROUP BY c.relname"
            )
            parts: dict[str, int] = dict(await cur.fetchall())
        assert parts["reading_default"] == 0
        assert (parts["reading_p202611"], parts["reading_p202612"], parts["reading_p202701"]) == (
            2,
            3,
            3,
        )
        assert not parts.keys() & set(report.partitions_dropped)
        again = await store.maintain(NOW, Retention((("water", 30),), default_days=100))
        assert (again.partitions_created, again.partitions_dropped, again.rows_deleted) == (
            [],
            [],
            0,
        )
    finally:
        await store.close()


@pytest.mark.postgres
async def test_migration_0008_converts_the_table_and_keeps_every_row(pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, applied_ms bigint NOT NULL)"
        )
        for m in migrations("postgres"):
            if m.version < 8:
                await conn.execute(m.sql.encode())
                await conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (m.version,))
        # two years of 10-minute readings of 3 series, some BAD, before the upgrade
        await conn.execute(
            "INSERT INTO reading SELECT 1 + g % 3, 1750000000000 + g::bigint * 600000, g % 1000,"
            " CASE WHEN g % 7 = 0 THEN 2 ELSE 0 END FROM generate_series(0, 105119) g"
        )
    store = PostgresStore(pg_dsn, pool_size=2)
    await store.open()
    try:
        assert await store.migrate() == [8, 9]
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            cur = await conn.execute(
                "SELECT count(*), sum(value), count(DISTINCT tableoid) FROM reading"
            )
            count, total, partitions = await cur.fetchone()  # type: ignore[misc]
            assert (count, partitions) == (105120, 25)
            cur = await conn.execute(
                "SELECT sum(n), sum(total) FROM reading_hourly"
                " UNION ALL SELECT sum(n), sum(total) FROM reading_daily"
                " UNION ALL SELECT count(*), sum(value) FROM reading WHERE (quality & 3) <> 2"
            )
            assert len({tuple(r) for r in await cur.fetchall()}) == 1
            # 0009: the counter columns, built from the same rows
            cur = await conn.execute(
                "SELECT sum(u_n), sum(x_n) FROM reading_hourly"
                " UNION ALL SELECT sum(u_n), sum(x_n) FROM reading_daily"
                " UNION ALL SELECT count(*) FILTER (WHERE quality IN (0, 1)),"
                " count(*) FILTER (WHERE quality NOT IN (0, 1)) FROM reading"
            )
            assert len({tuple(r) for r in await cur.fetchall()}) == 1
            cur = await conn.execute(
                "SELECT series_id, bucket_ms FROM reading_hourly WHERE NOT u_rising"
            )
            falling = {(int(r[0]), int(r[1])) for r in await cur.fetchall()}
        usable: dict[tuple[int, int], list[int]] = {}
        for g in range(105120):
            if g % 7:
                ts = 1750000000000 + g * 600000
                usable.setdefault((1 + g % 3, ts // HOUR_MS * HOUR_MS), []).append(g % 1000)
        want = {k for k, vs in usable.items() if vs != sorted(vs)}
        assert falling == want
        assert want  # the data has hours that fall (at the wrap of g % 1000)
        hours = await store.buckets(1, 1750000000000 // HOUR_MS * HOUR_MS, 2**42, HOUR_MS, Agg.SUM)
        assert sum(p.count for p in hours) == sum(1 for g in range(105120) if g % 3 == 0 and g % 7)
    finally:
        await store.close()


async def test_sqlite_0006_builds_the_rollups_of_the_readings_already_stored(tmp_path) -> None:
    import random
    import sqlite3

    from cloud.storage.rollups import aggregate
    from cloud.storage.sqlite import SqliteStore

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ms INTEGER)")
    for m in migrations("sqlite"):
        if m.version < 6:
            conn.executescript(m.sql)
            conn.execute("INSERT INTO schema_version VALUES (?, 0)", (m.version,))
    rng = random.Random(6)
    rows = [
        (rng.randint(1, 3), NOW + rng.randrange(3 * DAY_MS), rng.randint(-99, 99) / 4, q)
        for q in rng.choices([0, 1, 2, 6], k=3000)
    ]
    rows = list({(r[0], r[1]): r for r in rows}.values())  # one reading per series and instant
    conn.executemany("INSERT INTO reading VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    store = SqliteStore(str(path))
    await store.open()
    try:
        assert await store.migrate() == [6, 7]  # 7: the counter columns, from the same rows
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        for table, size in (("reading_hourly", HOUR_MS), ("reading_daily", DAY_MS)):
            got = {(r[0], r[1]): r[2:] for r in conn.execute(f"SELECT * FROM {table}")}
            # in time order, so that `u_rising` is exact (the migration's is)
            in_order = sorted(rows, key=lambda r: r[1])
            want = {k: p.columns() for k, p in aggregate(in_order, size).items()}
            assert got.keys() == want.keys()
            for k, w in want.items():
                assert got[k][0] == w[0]
                assert got[k][1] == pytest.approx(w[1])
                assert got[k][2:] == w[2:]
    finally:
        conn.close()
