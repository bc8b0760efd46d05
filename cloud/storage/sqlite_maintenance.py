"""The SQLite store's maintenance (`Store.maintain`): retention by deleting (no partitions);
rules in `cloud.storage.retention`."""

from __future__ import annotations

from cloud.storage.retention import MaintenanceReport, Retention, delete_statements
from cloud.storage.sqlite_db import PH, Conn, SqliteDb


class SqliteMaintenance(SqliteDb):
    async def maintain(self, now_ms: int, retention: Retention) -> MaintenanceReport:
        """Delete raw readings past their medium's retention, in one write transaction."""

        def run(conn: Conn) -> int:
            deleted = 0
            for statement, params in delete_statements(retention, now_ms, PH):
                deleted += max(conn.execute(statement, params).rowcount, 0)
            return deleted

        deleted = await self._write(lambda c: self._tx(c, lambda: run(c)))
        return MaintenanceReport(rows_deleted=deleted)
