"""The batch interface on both backends (PostgreSQL both ways, see conftest.py): the chain
transaction's outcomes, exactly once under concurrency (in one store and across two stores on one
database), all-or-nothing, and PostgreSQL's one-statement path for small batches."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from cloud.errors import IntegrityError
from cloud.storage.batches import Outcome
from cloud.storage.postgres import PostgresStore
from cloud.storage.postgres_batches import SMALL_BATCH_MAX
from cloud.storage.sqlite import SqliteStore
from cloud.storage.store import Store
from tests.cloud.helpers import Gateway, register, row_counts
from wire.models import GENESIS


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
