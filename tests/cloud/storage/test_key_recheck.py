"""The batch transaction re-checks the signing key and the device under the row lock (issue 12,
observed 7): a key revoked, or a device disabled, after the request was authenticated stores
nothing, on every backend and both PostgreSQL paths."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from cloud.storage.batches import Outcome
from cloud.storage.devices import DeviceStatus
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, Gateway, register, row_counts


async def test_a_revoked_key_stores_nothing(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    first = gw.next_batch(n_readings=5)
    assert (await store.store_batch(gw.meta(first), first.batch)).outcome is Outcome.STORED
    await store.revoke_key(gw.keyid, START_MS + 10)
    before = await row_counts(store)
    b = gw.next_batch(n_readings=5)
    result = await store.store_batch(gw.meta(b, received_ms=START_MS + 20), b.batch)
    assert (result.outcome, result.expected_seq) == (Outcome.KEY_REFUSED, 2)
    # a retry of an already stored batch is refused too: the key may not speak any more
    again = await store.store_batch(gw.meta(first), first.batch)
    assert again.outcome is Outcome.KEY_REFUSED
    assert await row_counts(store) == before
    assert (await store.chain_head("gw-1")).seq == 1  # type: ignore[union-attr]


async def test_a_disabled_device_stores_nothing_until_enabled(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    await store.set_device_status("gw-1", DeviceStatus.DISABLED)
    b = gw.next_batch(n_readings=2000)  # over the PostgreSQL one-call size: the COPY path too
    before = await row_counts(store)
    assert (await store.store_batch(gw.meta(b), b.batch)).outcome is Outcome.KEY_REFUSED
    assert await row_counts(store) == before
    await store.set_device_status("gw-1", DeviceStatus.ACTIVE)
    assert (await store.store_batch(gw.meta(b), b.batch)).outcome is Outcome.STORED


async def test_a_retiring_key_is_refused_from_its_end_on(store: Store) -> None:
    old = Gateway("gw-1")
    await register(store, old)
    new = Gateway("gw-1")
    rotated = await store.rotate_key(
        "gw-1",
        old.keyid,
        new.keyid,
        bytes(new.key.public_key().public_bytes_raw()),
        now_ms=START_MS,
        overlap_ms=1000,
    )
    assert rotated is not None
    b = old.next_batch()
    late = dataclasses.replace(old.meta(b), received_ms=START_MS + 1000)
    assert (await store.store_batch(late, b.batch)).outcome is Outcome.KEY_REFUSED
    in_time = dataclasses.replace(old.meta(b), received_ms=START_MS + 999)
    assert (await store.store_batch(in_time, b.batch)).outcome is Outcome.STORED


@pytest.mark.postgres
@pytest.mark.parametrize("revoke", ["key", "device"])
async def test_a_postgres_revocation_waits_for_a_batch_in_flight(pg_dsn: str, revoke) -> None:
    """A revocation takes the device row lock that the batch transaction holds: it cannot commit
    while a batch is between its key check and its commit, so once it returns no batch can be
    stored with the key."""
    import psycopg

    from cloud.storage.postgres import PostgresStore

    store = PostgresStore(pg_dsn, pool_size=2)
    await store.open()
    try:
        await store.migrate()
        gw = Gateway("gw-1")
        await register(store, gw)
        async with await psycopg.AsyncConnection.connect(pg_dsn) as holder:
            # what an ingest in flight holds: the device row, FOR UPDATE, until it commits
            await holder.execute("SELECT 1 FROM device WHERE id = 'gw-1' FOR UPDATE")
            revoking: asyncio.Task[bool | int] = asyncio.create_task(
                store.revoke_key(gw.keyid, START_MS)
                if revoke == "key"
                else store.revoke_device_keys("gw-1", START_MS)
            )
            async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as watch:
                waiting = 0
                async with asyncio.timeout(30):
                    while waiting == 0 and not revoking.done():
                        cur = await watch.execute(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND query LIKE %s",
                            ("%device_key%",),
                        )
                        row = await cur.fetchone()
                        waiting = int(row[0]) if row else 0
                        await asyncio.sleep(0.02)
            assert not revoking.done(), "the revocation did not wait for the device row"
            await holder.commit()
        assert await revoking
        key = await store.get_key(gw.keyid)
        assert key is not None
        assert key.status == "revoked"
    finally:
        await store.close()
