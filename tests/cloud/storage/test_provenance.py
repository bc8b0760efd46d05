"""Batch records keep the config version that produced them and the time they cover, on both
backends and on both of PostgreSQL's write paths (the conftest's `postgres-large-path`)."""

from __future__ import annotations

from cloud.storage.batches import Outcome
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, Gateway, register
from wire.models import Counters, Event

SECOND = 1000


async def test_batches_name_their_config_and_time_range(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    sent = [
        gw.next_batch(config_version="aaaa"),  # seq 1: readings at START + 10 s .. + 19 s
        gw.next_batch(config_version="aaaa"),  # seq 2: + 20 s .. + 29 s
        gw.next_batch(config_version="bbbb"),  # seq 3: + 30 s .. + 39 s
        gw.next_batch(n_readings=0, events=[Event("ticket", START_MS + 45 * SECOND)]),
        gw.next_batch(n_readings=0, counters=Counters(dropped_buffer_full=1)),  # no time at all
    ]
    for frozen in sent:
        result = await store.store_batch(gw.meta(frozen), frozen.batch)
        assert result.outcome is Outcome.STORED
    everything = await store.batches("gw-1", 0, START_MS + 3600 * SECOND, 100)
    assert [(b.seq, b.config_version, b.readings, b.events) for b in everything] == [
        (1, "aaaa", 10, 0),
        (2, "aaaa", 10, 0),
        (3, "bbbb", 10, 0),
        (4, "", 0, 1),
    ]
    assert (everything[0].min_ts_ms, everything[0].max_ts_ms) == (
        START_MS + 10 * SECOND,
        START_MS + 19 * SECOND,
    )
    assert (everything[3].min_ts_ms, everything[3].max_ts_ms) == ((START_MS + 45 * SECOND,) * 2)
    assert everything[0].boot_id == "boot-0001"
    # which config read the reading at START + 25 s? the batch whose range holds it
    (at_25,) = await store.batches("gw-1", START_MS + 25 * SECOND, START_MS + 25 * SECOND + 1, 10)
    assert (at_25.seq, at_25.config_version) == (2, "aaaa")
    # [from, to): a batch ending exactly at from_ms counts, one starting at to_ms does not
    edge = await store.batches("gw-1", START_MS + 19 * SECOND, START_MS + 30 * SECOND, 10)
    assert [b.seq for b in edge] == [1, 2]
    assert [b.seq for b in await store.batches("gw-1", 0, START_MS + 3600 * SECOND, 2)] == [1, 2]
    assert await store.batches("gw-2", 0, START_MS + 3600 * SECOND, 10) == []
