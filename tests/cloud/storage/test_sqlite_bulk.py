"""The SQLite bulk loader (`cloud.storage.sqlite_bulk`): what it writes reads back through the
store's read interface; it refuses a file without the schema."""

from __future__ import annotations

import pytest

from cloud.errors import StoreError
from cloud.storage.devices import DeviceStatus
from cloud.storage.reads import EventRecord, SeriesFilter, SeriesInfo
from cloud.storage.sqlite import SqliteStore
from cloud.storage.sqlite_bulk import BulkDevice, bulk_load


async def test_bulk_load_reads_back(tmp_path) -> None:
    path = str(tmp_path / "cloud.db")
    store = SqliteStore(path)
    await store.open()
    try:
        await store.migrate()
        series = [
            SeriesInfo(1, "gw-1", "energy", "kWh", "plant", "hall", "press", "electricity"),
            SeriesInfo(2, "gw-1", "temp", "degC", "plant", "hall", "press", ""),
        ]
        chunks = [[(1, 1_000, 1.0, 0), (2, 1_000, 20.5, 0)], [(1, 2_000, 2.5, 1)]]
        ticket = EventRecord("gw-1", 1, "weighbridge_ticket", 1_500, 0, {"net_kg": 12, "lot": "A"})
        written = bulk_load(
            path,
            devices=[BulkDevice("gw-1", 500, last_seen_ms=2_000, clock_state=0, clock_offset_ms=3)],
            series=series,
            readings=iter(chunks),
            events=[ticket],
        )
        assert written == 3
        assert await store.list_series(SeriesFilter()) == series
        points = await store.readings(1, 0, 10_000, 10)
        assert [(p.ts_ms, p.value, p.quality) for p in points] == [(1_000, 1.0, 0), (2_000, 2.5, 1)]
        assert await store.events("gw-1", None, 0, 10_000, 10) == [ticket]
        (device,) = await store.list_devices()
        assert (device.device_id, device.status, device.last_seen_ms, device.clock_offset_ms) == (
            "gw-1",
            DeviceStatus.ACTIVE,
            2_000,
            3,
        )
    finally:
        await store.close()


def test_bulk_load_needs_a_migrated_store(tmp_path) -> None:
    with pytest.raises(StoreError, match="migrated"):
        bulk_load(str(tmp_path / "empty.db"), devices=[], series=[], readings=[])
