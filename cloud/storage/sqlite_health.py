"""The SQLite store's health tables (`cloud.storage.health`)."""

from __future__ import annotations

from typing import Any

from cloud.storage import health_sql
from cloud.storage.health import HEALTH_HISTORY_KEEP, HealthRecord
from cloud.storage.sqlite_db import PH, Conn, SqliteDb


def _records(rows: list[Any]) -> list[HealthRecord]:
    return [HealthRecord(r[0], int(r[1]), bytes(r[2])) for r in rows]


class SqliteHealth(SqliteDb):
    """`HealthStore` and `HealthReads` on SQLite."""

    async def store_health(
        self, device_id: str, received_ms: int, body: bytes, *, keep: int = HEALTH_HISTORY_KEEP
    ) -> None:
        def store(conn: Conn) -> None:
            conn.execute(health_sql.UPSERT_LATEST.format(p=PH), (device_id, received_ms, body))
            conn.execute(health_sql.APPEND_LOG.format(p=PH), (device_id, received_ms, body))
            conn.execute(health_sql.TRIM_LOG.format(p=PH), (device_id, device_id, keep))

        await self._write(lambda c: self._tx(c, lambda: store(c)))

    async def latest_health(self, device_id: str | None = None) -> list[HealthRecord]:
        if device_id is None:
            return _records(await self._fetch_rows(health_sql.LATEST_ALL, ()))
        return _records(await self._fetch_rows(health_sql.LATEST_ONE.format(p=PH), (device_id,)))

    async def health_history(self, device_id: str, limit: int) -> list[HealthRecord]:
        return _records(await self._fetch_rows(health_sql.HISTORY.format(p=PH), (device_id, limit)))
