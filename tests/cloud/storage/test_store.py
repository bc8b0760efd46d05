"""The whole store on both backends (PostgreSQL both ways, see conftest.py): the schema
lifecycle and the bench's bulk path."""

from __future__ import annotations

from cloud.storage.migrations import latest_version
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, row_counts


def test_latest_schema_versions() -> None:
    # PostgreSQL 0008 (partitions, roll-ups) and SQLite 0006 (roll-ups), issue 18; 0009 and 0007:
    # the roll-ups' counter columns
    assert (latest_version("postgres"), latest_version("sqlite")) == (9, 7)


async def test_migrate_is_idempotent(store: Store) -> None:
    assert await store.schema_version() == latest_version(store.kind)
    assert await store.migrate() == []
    assert not await store.empty()


async def test_bulk_insert_readings(store: Store) -> None:
    await store.bulk_insert_readings([(1, START_MS + i, i * 0.5, 0) for i in range(1000)])
    assert (await row_counts(store))["reading"] == 1000
    got = await store.readings(1, 0, 2**62, 5)
    assert [p.value for p in got] == [0.0, 0.5, 1.0, 1.5, 2.0]
