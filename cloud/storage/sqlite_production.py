"""The SQLite store's production entries (`cloud.storage.production`)."""

from __future__ import annotations

from cloud.storage import production_sql
from cloud.storage.production import NewEntry, ProductionRecord, records
from cloud.storage.sqlite_db import PH, Conn, SqliteDb


class SqliteProduction(SqliteDb):
    """`ProductionStore` on SQLite: one writer, so the check and the insert cannot race."""

    async def add_production(self, entry: NewEntry, now_ms: int) -> int | None:
        def add(conn: Conn) -> int | None:
            if entry.supersedes is not None:
                found = conn.execute(
                    production_sql.IN_EFFECT.format(p=PH), (entry.supersedes,)
                ).fetchone()
                if found is None:
                    return None
            cur = conn.execute(
                production_sql.INSERT.format(p=PH),
                (
                    entry.process,
                    entry.from_ms,
                    entry.to_ms,
                    entry.tonnes,
                    entry.note,
                    entry.actor,
                    now_ms,
                    entry.supersedes,
                ),
            )
            return int(cur.lastrowid or 0)

        return await self._write(lambda c: self._tx(c, lambda: add(c)))

    async def list_production(
        self, from_ms: int, to_ms: int, *, in_effect_only: bool
    ) -> list[ProductionRecord]:
        sql = production_sql.LIST_IN_EFFECT if in_effect_only else production_sql.LIST
        return records(await self._fetch_rows(sql.format(p=PH), (to_ms, from_ms)))
