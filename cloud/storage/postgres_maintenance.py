"""The PostgreSQL store's maintenance: partitions ahead of time, retention (`Store.maintain`;
the rules are in `cloud.storage.retention`).

One maintenance at a time per schema (a transaction-level advisory lock: receivers on several
machines may all run their task; the others skip a round that is already running). Statements
run without the store's 30 s statement timeout (a first retention pass over years of rows may
take longer) but keep its lock timeout, so a batch is never held behind a long lock wait of ours:
the partition DDL takes brief locks on `reading`.
"""

from __future__ import annotations

import re

from psycopg import sql

from cloud.storage.postgres_db import PH, PostgresDb, translate
from cloud.storage.retention import DAY_MS, MaintenanceReport, Retention, delete_statements

_MAINTENANCE_LOCK = 0x7469_6572_6D61_696E & 0x7FFF_FFFF_FFFF_FFFF  # "tiermain"
MONTH_MS = 31 * DAY_MS  # "a month" for how far back and ahead: partitions are calendar months
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


class PostgresMaintenance(PostgresDb):
    async def maintain(self, now_ms: int, retention: Retention) -> MaintenanceReport:
        """Create partitions from last month to `retention.months_ahead` ahead, drop the ones
        past every medium's retention, delete what is past its own; a report of what changed
        (empty when another process holds the maintenance lock)."""
        async with self._pool.connection() as conn:
            with translate():
                async with conn.transaction():
                    cur = await conn.execute(
                        "SELECT pg_try_advisory_xact_lock(%s)", (_MAINTENANCE_LOCK,)
                    )
                    got = await cur.fetchone()
                    if not got or not got[0]:
                        return MaintenanceReport()
                    await conn.execute("SET LOCAL statement_timeout = 0")
                    cur = await conn.execute(
                        "SELECT ensure_reading_partitions(%s, %s)",
                        (now_ms - MONTH_MS, now_ms + retention.months_ahead * MONTH_MS),
                    )
                    created = [str(r[0]) for r in await cur.fetchall()]
                    dropped = []
                    longest = retention.longest_days
                    if longest is not None:
                        cutoff = now_ms - longest * DAY_MS
                        cur = await conn.execute(
                            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)"
                            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                            " WHERE i.inhparent = 'reading'::regclass ORDER BY c.relname"
                        )
                        for name, bound in await cur.fetchall():
                            match = _BOUND.search(bound or "")
                            if match and int(match[2]) <= cutoff:
                                await conn.execute(
                                    sql.SQL("DROP TABLE {}").format(sql.Identifier(name))
                                )
                                dropped.append(str(name))
                    deleted = 0
                    for statement, params in delete_statements(retention, now_ms, PH):
                        cur = await conn.execute(statement, params)
                        deleted += max(cur.rowcount, 0)
        return MaintenanceReport(created, dropped, deleted)
