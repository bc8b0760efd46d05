"""Operators' production entries on both backends: append-only, a correction supersedes once."""

from __future__ import annotations

import asyncio

from cloud.storage.migrations import migrations
from cloud.storage.production import NewEntry
from cloud.storage.store import Store

HOUR = 3_600_000


def test_the_production_table_has_its_schema_versions() -> None:
    names = {(m.version, m.name) for b in ("postgres", "sqlite") for m in migrations(b)}
    assert (6, "postgres_0006_production.sql") in names
    assert (4, "sqlite_0004_production.sql") in names


async def test_entries_are_listed_by_window_and_corrected_by_superseding(store: Store) -> None:
    first = await store.add_production(NewEntry("kiln", 0, 8 * HOUR, 40.0, "shift 1", "ana"), 10)
    other = await store.add_production(NewEntry("mill", 8 * HOUR, 16 * HOUR, 9.5, "", "ana"), 11)
    assert first is not None
    assert other is not None
    assert first < other

    fix = await store.add_production(
        NewEntry("kiln", 0, 8 * HOUR, 42.5, "recount", "bo", supersedes=first), 20
    )
    assert fix is not None
    # the same entry cannot be superseded twice, nor an entry that does not exist
    twice = NewEntry("kiln", 0, 8 * HOUR, 1.0, "", "bo", supersedes=first)
    assert await store.add_production(twice, 21) is None
    assert (
        await store.add_production(NewEntry("kiln", 0, 1, 1.0, "", "bo", supersedes=999), 21)
        is None
    )

    everything = await store.list_production(0, 24 * HOUR, in_effect_only=False)
    assert [(r.entry_id, r.tonnes, r.superseded_by, r.supersedes) for r in everything] == [
        (first, 40.0, fix, None),
        (other, 9.5, None, None),
        (fix, 42.5, None, first),
    ]
    assert everything[0].note == "shift 1"
    assert everything[0].actor == "ana"
    assert everything[0].entered_ms == 10
    in_effect = await store.list_production(0, 24 * HOUR, in_effect_only=True)
    assert [r.entry_id for r in in_effect] == [other, fix]
    # overlap: [from, to) windows that only touch do not overlap
    assert [
        r.entry_id for r in await store.list_production(8 * HOUR, 9 * HOUR, in_effect_only=True)
    ] == [other]
    assert await store.list_production(16 * HOUR, 17 * HOUR, in_effect_only=False) == []


async def test_concurrent_corrections_of_one_entry_make_one(store: Store) -> None:
    first = await store.add_production(NewEntry("kiln", 0, HOUR, 1.0, "", "ana"), 1)
    assert first is not None
    fixes = [NewEntry("kiln", 0, HOUR, float(i), "", "bo", supersedes=first) for i in range(5)]
    got = await asyncio.gather(*(store.add_production(f, 2) for f in fixes))
    assert sum(g is not None for g in got) == 1
    in_effect = await store.list_production(0, HOUR, in_effect_only=True)
    assert len(in_effect) == 1
