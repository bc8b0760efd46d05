"""The SQLite store's reads: devices, series, readings, buckets, latest values, events, batch
records and the figures' windows, all on the reader connection."""

from __future__ import annotations

import json
from typing import Any

from cloud.storage import queries
from cloud.storage.devices import DeviceState
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
from cloud.storage.sqlite_db import PH, SqliteDb
from cloud.storage.windows import CounterWindowReads


class SqliteReads(SqliteDb, RollupReads, CounterWindowReads):
    """`ReadStore` on SQLite."""

    async def list_devices(self) -> list[DeviceState]:
        rows = await self._read(lambda c: c.execute(queries.SELECT_DEVICES).fetchall())
        return [device_state(r) for r in rows]

    async def list_series(self, flt: SeriesFilter) -> list[SeriesInfo]:
        sql, params = queries.list_series(flt, PH)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [series_info(r) for r in rows]

    async def get_series(self, series_id: int) -> SeriesInfo | None:
        sql = queries.fmt(queries.SELECT_SERIES, PH)
        row = await self._read(lambda c: c.execute(sql, (series_id,)).fetchone())
        return None if row is None else series_info(row)

    async def readings(self, series_id: int, from_ms: int, to_ms: int, limit: int) -> list[Point]:
        sql = queries.fmt(queries.READINGS, PH)
        rows = await self._read(
            lambda c: c.execute(sql, (series_id, from_ms, to_ms, limit)).fetchall()
        )
        return [Point(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def _raw_buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        # SQLite returns the bare column `value` from the row that holds max(ts_ms). BAD
        # readings are left out, as in queries.buckets.
        if agg is Agg.LAST:
            sql = (
                "SELECT bucket, value, n FROM (SELECT (ts_ms / ?) * ? AS bucket, value,"
                " max(ts_ms) AS t, count(*) AS n FROM reading"
                " WHERE series_id = ? AND ts_ms >= ? AND ts_ms < ? AND (quality & 3) <> 2"
                " GROUP BY bucket)"
                " ORDER BY bucket"
            )
        else:
            sql = queries.buckets(agg, PH, last_expr="")
        params = (bucket_ms, bucket_ms, series_id, from_ms, to_ms)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [BucketPoint(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def latest(self, flt: SeriesFilter) -> list[LatestValue]:
        sql, params = queries.latest(flt, PH, backend=self.kind)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [LatestValue(series_info(r[:8]), int(r[8]), float(r[9]), int(r[10])) for r in rows]

    async def events(
        self, device_id: str | None, kind: str | None, from_ms: int, to_ms: int, limit: int
    ) -> list[EventRecord]:
        sql, extra = queries.events(device_id, kind, PH)
        params: list[Any] = [from_ms, to_ms, *extra, limit]
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [event_record(r[:5], json.loads(r[5])) for r in rows]

    async def batches(
        self, device_id: str, from_ms: int, to_ms: int, limit: int
    ) -> list[BatchRecord]:
        sql = queries.fmt(queries.BATCHES, PH)
        params = (device_id, from_ms, to_ms, limit)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [BatchRecord(*r) for r in rows]
