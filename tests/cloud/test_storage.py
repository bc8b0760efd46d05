"""One suite, both backends: the chain transaction, enrolment, keys, and the queries.

PostgreSQL runs the suite twice: as configured (a small batch is one `ingest_batch(...)` call,
migration 0002) and with that path turned off (every batch locks, decides in Python and COPYs),
so both ways of running the batch transaction keep the same contract.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud.errors import IntegrityError
from cloud.receiver.tokens import issue_token
from cloud.storage.batches import Outcome
from cloud.storage.devices import DeviceStatus, KeyStatus
from cloud.storage.migrations import latest_version
from cloud.storage.postgres import PostgresStore
from cloud.storage.postgres_batches import SMALL_BATCH_MAX
from cloud.storage.reads import Agg, SeriesFilter
from cloud.storage.registry import EnrollRequest
from cloud.storage.sqlite import SqliteStore
from cloud.storage.store import Store
from tests.cloud.conftest import open_store
from tests.cloud.helpers import START_MS, Gateway, register, row_counts
from wire.enrollment import parse_token
from wire.keys import public_key_to_raw
from wire.models import GENESIS, Counters, Event, SeriesData, SeriesKey


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-large-path", marks=pytest.mark.postgres),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(request, tmp_path) as s:
        yield s


async def test_migrate_is_idempotent(store: Store) -> None:
    assert await store.schema_version() == latest_version(store.kind)
    assert await store.migrate() == []
    assert not await store.empty()


async def test_register_makes_an_active_usable_key(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    key = await store.get_key(gw.keyid)
    assert key is not None
    assert (key.device_id, key.status, key.device_status) == (
        "gw-1",
        KeyStatus.ACTIVE,
        DeviceStatus.ACTIVE,
    )
    assert key.public_key == public_key_to_raw(gw.key.public_key())
    assert key.usable(START_MS)
    assert await store.get_key("nope") is None
    head = await store.chain_head("gw-1")
    assert head is not None
    assert (head.seq, head.digest) == (0, GENESIS)


async def test_append_duplicate_gap_and_forks(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    b1 = gw.next_batch(n_readings=20, n_series=2)
    r = await store.store_batch(gw.meta(b1), b1.batch)
    assert (r.outcome, r.seq, r.expected_seq) == (Outcome.STORED, 1, 2)
    before = await row_counts(store)
    assert (before["batch"], before["reading"], before["series"]) == (1, 20, 2)

    dup = await store.store_batch(gw.meta(b1), b1.batch)
    assert dup.outcome is Outcome.DUPLICATE
    assert await row_counts(store) == before

    b2 = gw.next_batch()
    b3 = gw.next_batch()
    gap = await store.store_batch(gw.meta(b3), b3.batch)
    assert (gap.outcome, gap.expected_seq) == (Outcome.SEQ_GAP, 2)
    await store.store_batch(gw.meta(b3), b3.batch)  # the retry is not a second gap

    other = Gateway("gw-1", key=gw.key).build(1, GENESIS, n_readings=3)  # seq 1, other content
    fork = await store.store_batch(gw.meta(other), other.batch)
    assert (fork.outcome, fork.reason, fork.expected_seq) == (
        Outcome.CHAIN_CONFLICT,
        "digest_mismatch",
        2,
    )
    bad_prev = gw.build(2, bytes(32), n_readings=3)
    fork2 = await store.store_batch(gw.meta(bad_prev), bad_prev.batch)
    assert (fork2.outcome, fork2.reason) == (Outcome.CHAIN_CONFLICT, "prev_mismatch")

    after = await row_counts(store)
    assert {k: after[k] for k in ("batch", "reading", "series")} == {
        "batch": 1,
        "reading": 20,
        "series": 2,
    }
    assert after["chain_event"] == 3
    device = await store.get_device("gw-1")
    assert device is not None
    assert (device.gaps, device.forks, device.head_seq) == (1, 2, 1)
    assert {e.reason for e in device.chain_events} == {"gap", "digest_mismatch", "prev_mismatch"}

    assert (await store.store_batch(gw.meta(b2), b2.batch)).outcome is Outcome.STORED
    assert (await store.store_batch(gw.meta(b3), b3.batch)).outcome is Outcome.STORED
    head = await store.chain_head("gw-1")
    assert head is not None
    assert (head.seq, head.digest) == (3, b3.digest)


async def test_device_state_sums_counters_and_records_clock(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    for n in (1, 2):
        b = gw.next_batch(counters=Counters(n, 10 * n, 100 * n))
        meta = dataclasses.replace(gw.meta(b), received_ms=START_MS + n, sig_created=1_790_000_003)
        await store.store_batch(meta, b.batch)
    [device] = await store.list_devices()
    assert (device.dropped_buffer_full, device.dropped_damaged, device.rejected_invalid) == (
        3,
        30,
        300,
    )
    assert (device.batches, device.readings, device.last_seen_ms) == (2, 20, START_MS + 2)
    assert (device.clock_state, device.clock_offset_ms, device.created_skew_ms) == (0, 12, 2998)
    assert device.last_boot_id == "boot-0001"


async def test_readings_and_events_round_trip_exactly(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    events = [Event("ticket", START_MS + 5, (("lot", "A-17"), ("net_kg", 1234.5), ("ok", True)))]
    b1 = gw.build(1, GENESIS, n_readings=30, n_series=3, events=events)
    b1.batch.series[0].quality[1] = 6  # bad + time untrusted
    await store.store_batch(gw.meta(b1), b1.batch)
    series = await store.list_series(SeriesFilter(device="gw-1"))
    assert [s.metric for s in series] == ["power_00", "power_01", "power_02"]
    s0 = b1.batch.series[0]
    points = await store.readings(series[0].series_id, 0, 2**62, 1000)
    assert [(p.ts_ms, p.value, p.quality) for p in points] == list(
        zip(s0.ts_ms, s0.values, s0.quality, strict=True)
    )
    [ev] = await store.events("gw-1", "ticket", 0, 2**62, 10)
    assert (ev.seq, ev.ts_ms, ev.attrs) == (
        1,
        START_MS + 5,
        {"lot": "A-17", "net_kg": 1234.5, "ok": True},
    )
    assert await store.events("gw-2", None, 0, 2**62, 10) == []


async def test_query_filters_ranges_buckets_and_latest(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    b = gw.next_batch(n_readings=20, n_series=2)
    await store.store_batch(gw.meta(b), b.batch)
    assert len(await store.list_series(SeriesFilter())) == 2
    assert len(await store.list_series(SeriesFilter(area="hall-1"))) == 1
    assert await store.list_series(SeriesFilter(site="elsewhere")) == []
    s0 = b.batch.series[0]
    sid = (await store.list_series(SeriesFilter(metric="power_00")))[0].series_id
    info = await store.get_series(sid)
    assert info is not None
    assert (info.metric, info.unit, info.medium) == ("power_00", "kW", "electricity")
    assert await store.get_series(10**9) is None

    window = await store.readings(sid, s0.ts_ms[2], s0.ts_ms[5], 100)
    assert [p.ts_ms for p in window] == s0.ts_ms[2:5]
    assert len(await store.readings(sid, 0, 2**62, 4)) == 4

    bucket = 5000
    expected: dict[int, list[float]] = {}
    for ts, v in zip(s0.ts_ms, s0.values, strict=True):
        expected.setdefault(ts // bucket * bucket, []).append(v)
    want = {
        Agg.AVG: {k: sum(v) / len(v) for k, v in expected.items()},
        Agg.MIN: {k: min(v) for k, v in expected.items()},
        Agg.MAX: {k: max(v) for k, v in expected.items()},
        Agg.LAST: {k: v[-1] for k, v in expected.items()},
        Agg.SUM: {k: sum(v) for k, v in expected.items()},
        Agg.COUNT: {k: float(len(v)) for k, v in expected.items()},
    }
    for agg, values in want.items():
        got = await store.buckets(sid, 0, 2**62, bucket, agg)
        assert {p.ts_ms: p.value for p in got} == pytest.approx(values), agg
        assert [p.count for p in got] == [len(expected[k]) for k in sorted(expected)]

    latest = await store.latest(SeriesFilter(device="gw-1"))
    assert [(lv.series.metric, lv.ts_ms, lv.value) for lv in latest] == [
        (s.key.metric, s.ts_ms[-1], s.values[-1]) for s in b.batch.series
    ]
    assert await store.latest(SeriesFilter(medium="water")) == []


async def test_concurrent_copies_store_once(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    batches = [gw.next_batch(n_readings=50, n_series=5) for _ in range(3)]
    for b in batches:
        results = await asyncio.gather(*(store.store_batch(gw.meta(b), b.batch) for _ in range(8)))
        outcomes = sorted(r.outcome for r in results)
        assert outcomes == [Outcome.DUPLICATE] * 7 + [Outcome.STORED]
    counts = await row_counts(store)
    assert (counts["batch"], counts["reading"], counts["series"]) == (3, 150, 5)


async def test_failed_transaction_writes_nothing(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    b = gw.next_batch(n_readings=10, n_series=2)
    meta = dataclasses.replace(gw.meta(b), keyid="not-a-registered-key")  # FK fails late
    before = await row_counts(store)
    with pytest.raises(IntegrityError):
        await store.store_batch(meta, b.batch)
    assert await row_counts(store) == before
    # the series ids of the rolled-back transaction were not cached: a real ingest works
    assert (await store.store_batch(gw.meta(b), b.batch)).outcome is Outcome.STORED
    assert (await row_counts(store))["reading"] == 10


async def _enroll(store: Store, gw: Gateway, token: str, *, now_ms: int = START_MS, device=None):
    parsed = parse_token(token)
    return await store.enroll(
        EnrollRequest(
            parsed.token_id,
            parsed.token_hash,
            device or gw.device_id,
            gw.keyid,
            public_key_to_raw(gw.key.public_key()),
            now_ms,
        ),
        max_failures=5,
    )


async def test_enrolment_token_rules(store: Store) -> None:
    gw, thief = Gateway("gw-1"), Gateway("gw-1")
    token, record = issue_token("gw-1", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record)
    pending = await store.get_device("gw-1")
    assert pending is not None
    assert pending.status is DeviceStatus.PENDING
    assert await _enroll(store, gw, token, now_ms=START_MS + 60_000) is None  # expired
    head = await _enroll(store, gw, token)
    assert head is not None
    assert head.seq == 0
    assert await _enroll(store, gw, token) == head  # the same key again: idempotent
    assert await _enroll(store, thief, token) is None  # used
    assert await store.get_key(thief.keyid) is None

    token2, record2 = issue_token("gw-2", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record2)
    other = Gateway("gw-2")
    tampered = token2[:-2] + ("AA" if not token2.endswith("AA") else "BA")
    for _ in range(5):
        assert await _enroll(store, other, tampered) is None  # wrong secret: counted
    assert await _enroll(store, other, token2) is None  # locked now, even with the right one
    token3, record3 = issue_token("gw-3", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record3)
    assert await _enroll(store, Gateway("gw-3"), token3, device="gw-1") is None  # wrong device


async def test_reenrolment_keeps_the_chain(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    b = gw.next_batch()
    await store.store_batch(gw.meta(b), b.batch)
    assert await store.revoke_device_keys("gw-1", START_MS) == 1
    new = Gateway("gw-1")
    token, record = issue_token("gw-1", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record)
    head = await _enroll(store, new, token)
    assert head is not None
    assert (head.seq, head.digest) == (1, b.digest)
    old_key = await store.get_key(gw.keyid)
    assert old_key is not None
    assert old_key.status is KeyStatus.REVOKED
    assert not old_key.usable(START_MS)


async def test_rotation_overlap_and_idempotence(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    nxt = Gateway("gw-1")
    raw = public_key_to_raw(nxt.key.public_key())
    rot = await store.rotate_key("gw-1", gw.keyid, nxt.keyid, raw, now_ms=START_MS, overlap_ms=1000)
    assert rot is not None
    assert (rot.keyid, rot.old_keyid, rot.old_not_after_ms) == (
        nxt.keyid,
        gw.keyid,
        START_MS + 1000,
    )
    again = await store.rotate_key(
        "gw-1", gw.keyid, nxt.keyid, raw, now_ms=START_MS + 500, overlap_ms=1000
    )
    assert again == rot
    old = await store.get_key(gw.keyid)
    assert old is not None
    assert old.status is KeyStatus.RETIRING
    assert old.usable(START_MS + 999)
    assert not old.usable(START_MS + 1000)
    third = Gateway("gw-1")
    assert (
        await store.rotate_key(
            "gw-1",
            gw.keyid,
            third.keyid,
            public_key_to_raw(third.key.public_key()),
            now_ms=START_MS,
            overlap_ms=1000,
        )
        is None
    )  # a retiring key cannot start another rotation
    assert (
        await store.rotate_key("gw-2", nxt.keyid, third.keyid, raw, now_ms=0, overlap_ms=0) is None
    )


async def test_revocation_and_device_status(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    assert await store.set_device_status("gw-1", DeviceStatus.DISABLED)
    key = await store.get_key(gw.keyid)
    assert key is not None
    assert not key.usable(START_MS)
    assert await store.set_device_status("gw-1", DeviceStatus.ACTIVE)
    assert await store.revoke_key(gw.keyid, START_MS)
    assert not await store.revoke_key(gw.keyid, START_MS)  # already revoked
    key = await store.get_key(gw.keyid)
    assert key is not None
    assert (key.status, key.revoked_ms) == (KeyStatus.REVOKED, START_MS)
    assert not await store.set_device_status("nope", DeviceStatus.DISABLED)
    _, record = issue_token("gw-9", now_ms=START_MS, ttl_ms=1)
    await store.create_token(record)
    assert not await store.set_device_status("gw-9", DeviceStatus.ACTIVE)  # pending stays


async def test_bulk_insert_readings(store: Store) -> None:
    await store.bulk_insert_readings([(1, START_MS + i, i * 0.5, 0) for i in range(1000)])
    assert (await row_counts(store))["reading"] == 1000
    got = await store.readings(1, 0, 2**62, 5)
    assert [p.value for p in got] == [0.0, 0.5, 1.0, 1.5, 2.0]


def _twin(store: Store) -> Store:
    """A second store on the same database, like a second receiver process."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.dsn, pool_size=4, small_batch_max=store.small_batch_max)


async def test_two_stores_on_one_database_store_each_batch_once(store: Store) -> None:
    other = _twin(store)
    await other.open()
    try:
        gws = [Gateway(f"gw-{i}") for i in range(3)]
        for gw in gws:
            await register(store, gw)
        for _ in range(4):
            batches = [(gw, gw.next_batch(n_readings=12, n_series=3)) for gw in gws]
            calls = [
                s.store_batch(gw.meta(b), b.batch)
                for gw, b in batches
                for s in (store, other, store, other)
            ]
            results = await asyncio.gather(*calls)
            assert sorted(r.outcome for r in results) == sorted(
                [Outcome.DUPLICATE] * 9 + [Outcome.STORED] * 3
            )
    finally:
        await other.close()
    counts = await row_counts(store)
    assert (counts["batch"], counts["reading"], counts["series"]) == (12, 144, 9)
    for device in await store.list_devices():
        assert (device.head_seq, device.batches, device.readings) == (4, 4, 48)


async def test_unknown_device_is_an_integrity_error_and_writes_nothing(store: Store) -> None:
    gw = Gateway("gw-ghost")
    b = gw.next_batch()
    before = await row_counts(store)
    with pytest.raises(IntegrityError):
        await store.store_batch(gw.meta(b), b.batch)
    assert await row_counts(store) == before


async def test_awkward_names_values_and_attributes_round_trip_exactly(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    names = ['a "quoted" \\ back,slash', "{braces}", "NULL", "", " spaced ", "é中😀"]
    series = []
    for i, name in enumerate(names):
        key = SeriesKey(f"m{i}-{name}" if name else f"m{i}", name, name, name, name, name)
        series.append(SeriesData(key))
    values = [1e16, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -123.456, 0.0]
    for s in series:
        for j, v in enumerate(values):
            s.append(START_MS + j, v, j % 4)
    attrs = (("q", 'say "hi" \\ {x}, NULL'), ("n", 1.5e16), ("neg", -7), ("ok", False))
    frozen = gw.build(1, GENESIS, n_readings=0, events=[Event('t"k', START_MS, attrs, 2)])
    frozen.batch.series.extend(series)
    r = await store.store_batch(gw.meta(frozen), frozen.batch)
    assert r.outcome is Outcome.STORED
    stored = await store.list_series(SeriesFilter(device="gw-1"))
    assert sorted(
        (s.metric, s.unit, s.site, s.area, s.process, s.medium) for s in stored
    ) == sorted(
        (s.key.metric, s.key.unit, s.key.site, s.key.area, s.key.process, s.key.medium)
        for s in series
    )
    for info in stored:
        points = await store.readings(info.series_id, 0, 2**62, 100)
        assert [(p.ts_ms, p.value, p.quality) for p in points] == [
            (START_MS + j, v, j % 4) for j, v in enumerate(values)
        ]
    [ev] = await store.events("gw-1", None, 0, 2**62, 10)
    assert (ev.kind, ev.quality, ev.attrs) == ('t"k', 2, dict(attrs))
    # the second batch finds every series by the ids cached from the first
    second = gw.build(2, frozen.digest, n_readings=0)
    second.batch.series.extend(SeriesData(s.key, [START_MS + 100], [1.0], [0]) for s in series)
    assert (await store.store_batch(gw.meta(second), second.batch)).outcome is Outcome.STORED
    assert len(await store.list_series(SeriesFilter())) == len(series)


async def test_small_and_large_batches_share_one_chain(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    sizes = [10, SMALL_BATCH_MAX + 1, 3, 0, SMALL_BATCH_MAX]  # both sides of PostgreSQL's limit
    for n in sizes:
        b = gw.next_batch(n_readings=n, n_series=1 if n else 0)
        assert (await store.store_batch(gw.meta(b), b.batch)).outcome is Outcome.STORED
        again = await store.store_batch(gw.meta(b), b.batch)
        assert again.outcome is Outcome.DUPLICATE
    device = await store.get_device("gw-1")
    assert device is not None
    assert (device.head_seq, device.batches) == (len(sizes), len(sizes))
    assert device.readings == sum(sizes) == (await row_counts(store))["reading"]


@pytest.mark.postgres
async def test_postgres_takes_one_statement_for_small_batches(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(pg_dsn, pool_size=2)
    await store.open()
    try:
        await store.migrate()
        gw = Gateway("gw-1")
        await register(store, gw)
        statements: list[str] = []
        fetchone = store._pool.fetchone

        async def spy(sql, params):
            statements.append(sql)
            return await fetchone(sql, params)

        monkeypatch.setattr(store._pool, "fetchone", spy)
        b = gw.next_batch(n_readings=SMALL_BATCH_MAX, n_series=4)
        assert (await store.store_batch(gw.meta(b), b.batch)).outcome is Outcome.STORED
        assert len(statements) == 1
        assert "ingest_batch(" in statements[0]
        big = gw.next_batch(n_readings=SMALL_BATCH_MAX + 1, n_series=1)  # COPY, not fetchone
        assert (await store.store_batch(gw.meta(big), big.batch)).outcome is Outcome.STORED
        assert len(statements) == 1
    finally:
        await store.close()
