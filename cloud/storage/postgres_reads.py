"""The PostgreSQL store's reads: devices, series, readings, buckets, latest values, events,
batch records and the figures' windows, each on a pooled connection."""

from __future__ import annotations

from cloud.storage import queries
from cloud.storage.devices import DeviceState
from cloud.storage.postgres_db import PH, PostgresDb
from cloud.storage.reads import (
    Agg,
    BatchRecord,
    BucketPoint,
    EventRecord,
    LatestValue,
    Point,
    SeriesFilter,
    SeriesInfo,
)
from cloud.storage.rollups import RollupReads
from cloud.storage.rows import device_state, event_record, series_info
from cloud.storage.windows import CounterWindowReads


class PostgresReads(PostgresDb, RollupReads, CounterWindowReads):
    """`ReadStore` on PostgreSQL."""

    async def list_devices(self) -> list[DeviceState]:
        rows = await self._fetchall(queries.SELECT_DEVICES)
        return [device_state(r) for r in rows]

    async def list_series(self, flt: SeriesFilter) -> list[SeriesInfo]:
        sql, params = queries.list_series(flt, PH)
        return [series_info(r) for r in await self._fetchall(sql, params)]

    async def get_series(self, series_id: int) -> SeriesInfo | None:
        row = await self._fetchone(queries.fmt(queries.SELECT_SERIES, PH), (series_id,))
        return None if row is None else series_info(row)

    async def readings(self, series_id: int, from_ms: int, to_ms: int, limit: int) -> list[Point]:
        rows = await self._fetchall(
            queries.fmt(queries.READINGS, PH), (series_id, from_ms, to_ms, limit)
        )
        return [Point(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def _raw_buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        sql = queries.buckets(agg, PH, last_expr="(array_agg(value ORDER BY ts_ms DESC))[1]")
        rows = await self._fetchall(sql, (bucket_ms, bucket_ms, series_id, from_ms, to_ms))
        return [BucketPoint(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def latest(self, flt: SeriesFilter) -> list[LatestValue]:
        sql, params = queries.latest(flt, PH, backend=self.kind)
        rows = await self._fetchall(sql, params)
        return [LatestValue(series_info(r[:8]), int(r[8]), float(r[9]), int(r[10])) for r in rows]

    async def events(
        self, device_id: str | None, kind: str | None, from_ms: int, to_ms: int, limit: int
    ) -> list[EventRecord]:
        sql, extra = queries.events(device_id, kind, PH)
        rows = await self._fetchall(sql, [from_ms, to_ms, *extra, limit])
        return [event_record(r[:5], r[5]) for r in rows]

    async def batches(
        self, device_id: str, from_ms: int, to_ms: int, limit: int
    ) -> list[BatchRecord]:
        sql = queries.fmt(queries.BATCHES, PH)
        rows = await self._fetchall(sql, (device_id, from_ms, to_ms, limit))
        return [BatchRecord(*r) for r in rows]
