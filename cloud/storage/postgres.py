"""The production store: PostgreSQL through psycopg 3's async API, with a small connection pool.

`PostgresStore` is assembled from one module per interface (`postgres_batches`,
`postgres_registry`, `postgres_reads`) over the shared plumbing of `postgres_db` (pool, session
timeouts, error translation); this module adds the schema: checking and migrating it, with an
advisory lock so that two receivers starting at once migrate once.
"""

from __future__ import annotations

import psycopg

from cloud.errors import SchemaError, StoreUnavailableError
from cloud.storage.migrations import latest_version, migrations
from cloud.storage.postgres_alerts import PostgresAlerts
from cloud.storage.postgres_batches import PostgresBatches
from cloud.storage.postgres_configs import PostgresConfigs
from cloud.storage.postgres_health import PostgresHealth
from cloud.storage.postgres_maintenance import PostgresMaintenance
from cloud.storage.postgres_production import PostgresProduction
from cloud.storage.postgres_reads import PostgresReads
from cloud.storage.postgres_registry import PostgresRegistry

# The advisory lock's two keys: ours ("tier" in ASCII) and the schema's hash, so receivers that
# share a schema migrate one at a time, and receivers on other schemas of the database never wait.
_MIGRATION_LOCK = 0x7469_6572
# How long a receiver waits for another's migration: longer than the sessions' lock_timeout
# (2 s, for the hot path), since a migration may rewrite a big table; for the same reason a
# migration's statements have no statement_timeout.
_MIGRATION_WAIT = "120s"


class PostgresStore(
    PostgresBatches,
    PostgresRegistry,
    PostgresReads,
    PostgresAlerts,
    PostgresHealth,
    PostgresProduction,
    PostgresMaintenance,
    PostgresConfigs,
):
    """`cloud.storage.store.Store` on PostgreSQL."""

    async def empty(self) -> bool:
        row = await self._fetchone(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        )
        return row is not None and int(row[0]) == 0

    async def schema_version(self) -> int:
        exists = await self._fetchone("SELECT to_regclass('schema_version') IS NOT NULL")
        if exists is None or not exists[0]:
            return 0
        row = await self._fetchone("SELECT max(version) FROM schema_version")
        return int(row[0] or 0) if row else 0

    async def migrate(self) -> list[int]:
        applied: list[int] = []
        async with self._pool.connection() as conn:
            for m in migrations(self.kind):
                try:
                    async with conn.transaction():
                        # Two receivers starting at once: one migrates, the other waits, then
                        # finds the version recorded and skips it.
                        await conn.execute(f"SET LOCAL lock_timeout = '{_MIGRATION_WAIT}'")
                        await conn.execute("SET LOCAL statement_timeout = 0")
                        await conn.execute(
                            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                            (_MIGRATION_LOCK,),
                        )
                        await conn.execute(
                            "CREATE TABLE IF NOT EXISTS schema_version"
                            " (version integer PRIMARY KEY, applied_ms bigint NOT NULL)"
                        )
                        cur = await conn.execute(
                            "SELECT 1 FROM schema_version WHERE version = %s", (m.version,)
                        )
                        if await cur.fetchone() is not None:
                            continue
                        await conn.execute(m.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_version VALUES"
                            " (%s, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
                            (m.version,),
                        )
                    applied.append(m.version)
                except psycopg.OperationalError as exc:
                    raise StoreUnavailableError(f"postgres unavailable: {exc}") from exc
                except psycopg.Error as exc:
                    raise SchemaError(f"migration {m.name} failed: {exc}") from exc
        if await self.schema_version() > latest_version(self.kind):
            raise SchemaError("the database schema is newer than this receiver")
        return applied
