"""The PostgreSQL store's production entries (`cloud.storage.production`)."""

from __future__ import annotations

from cloud.storage import production_sql
from cloud.storage.postgres_db import PH, PostgresDb, translate
from cloud.storage.production import NewEntry, ProductionRecord, records


class PostgresProduction(PostgresDb):
    """`ProductionStore` on PostgreSQL. Writers take one transaction-scoped advisory lock, so a
    correction's check and insert are atomic across receivers (entries are few; the unique index
    on `supersedes` would refuse a lost race anyway)."""

    async def add_production(self, entry: NewEntry, now_ms: int) -> int | None:
        async with self._pool.connection() as conn, conn.transaction():
            with translate():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('production_entry'))")
                if entry.supersedes is not None:
                    cur = await conn.execute(
                        production_sql.IN_EFFECT.format(p=PH), (entry.supersedes,)
                    )
                    if await cur.fetchone() is None:
                        return None
                cur = await conn.execute(
                    production_sql.INSERT.format(p=PH) + " RETURNING id",
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
                row = await cur.fetchone()
                if row is None:  # RETURNING always gives the row
                    raise AssertionError("INSERT ... RETURNING gave no row")
                return int(row[0])

    async def list_production(
        self, from_ms: int, to_ms: int, *, in_effect_only: bool
    ) -> list[ProductionRecord]:
        sql = production_sql.LIST_IN_EFFECT if in_effect_only else production_sql.LIST
        return records(await self._fetchall(sql.format(p=PH), (to_ms, from_ms)))
