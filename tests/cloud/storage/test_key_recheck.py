"""The batch transaction re-checks the signing key and the device under the row lock (issue 12,
observed 7): a key revoked, or a device disabled, after the request was authenticated stores
nothing, on every backend and both PostgreSQL paths."""

from __future__ import annotations

import dataclasses

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
