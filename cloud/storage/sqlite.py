"""The embedded store: one SQLite file in WAL mode, for a single receiver process.

`SqliteStore` is assembled from one module per interface (`sqlite_batches`, `sqlite_registry`,
`sqlite_reads`) over the shared plumbing of `sqlite_db` (threads, connections, error
translation); this module adds the schema: checking and migrating it.

Several receiver processes on one file are possible
(`BEGIN IMMEDIATE` + `busy_timeout`) but PostgreSQL is the multi-receiver backend.
"""

from __future__ import annotations

import sqlite3

from cloud.errors import SchemaError
from cloud.storage.migrations import latest_version, migrations
from cloud.storage.sqlite_alerts import SqliteAlerts
from cloud.storage.sqlite_batches import SqliteBatches
from cloud.storage.sqlite_configs import SqliteConfigs
from cloud.storage.sqlite_db import Conn
from cloud.storage.sqlite_health import SqliteHealth
from cloud.storage.sqlite_maintenance import SqliteMaintenance
from cloud.storage.sqlite_production import SqliteProduction
from cloud.storage.sqlite_reads import SqliteReads
from cloud.storage.sqlite_registry import SqliteRegistry


class SqliteStore(
    SqliteBatches,
    SqliteRegistry,
    SqliteReads,
    SqliteAlerts,
    SqliteHealth,
    SqliteProduction,
    SqliteMaintenance,
    SqliteConfigs,
):
    """`cloud.storage.store.Store` on SQLite."""

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def empty(self) -> bool:
        count = await self._read(
            lambda c: c.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()
        )
        return int(count[0]) == 0

    async def schema_version(self) -> int:
        def version(conn: Conn) -> int:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
            ).fetchone()
            if exists is None:
                return 0
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            return int(row[0] or 0)

        return await self._read(version)

    async def migrate(self) -> list[int]:
        def apply(conn: Conn) -> list[int]:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)"
            )
            done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_version")}
            applied = []
            for m in migrations(self.kind):
                if m.version in done:
                    continue
                script = (
                    "BEGIN IMMEDIATE;\n"
                    + m.sql
                    + f"\nINSERT INTO schema_version VALUES ({m.version},"
                    " CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));\nCOMMIT;"
                )
                try:
                    conn.executescript(script)
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise SchemaError(f"migration {m.name} failed: {exc}") from exc
                applied.append(m.version)
            return applied

        applied = await self._write(apply)
        if await self.schema_version() > latest_version(self.kind):
            raise SchemaError("the database schema is newer than this receiver")
        return applied
