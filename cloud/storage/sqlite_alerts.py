"""`cloud.storage.alerts.AlertStore` on SQLite."""

from __future__ import annotations

from cloud.storage.alerts import AlertRecord, AuditEntry, Delivery, OutboxItem
from cloud.storage.sqlite_db import Conn, SqliteDb

_SELECT_ALERTS = (
    "SELECT id, group_key, rule_id, kind, subject, state, first_ms, last_ms, occurrences,"
    " evidence FROM alert"
)
LIVE = ("open", "acknowledged")


class SqliteAlerts(SqliteDb):
    async def put_rule(self, rule_id: str, body: str, now_ms: int) -> None:
        def put(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO alert_rule (id, body, updated_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET body = excluded.body,"
                " updated_ms = excluded.updated_ms",
                (rule_id, body, now_ms),
            )

        await self._write(lambda c: self._tx(c, lambda: put(c)))

    async def list_rules(self) -> list[tuple[str, str]]:
        rows = await self._fetch_rows("SELECT id, body FROM alert_rule ORDER BY id", ())
        return [(str(r[0]), str(r[1])) for r in rows]

    async def raise_alert(
        self,
        *,
        group_key: str,
        rule_id: str,
        kind: str,
        subject: str,
        evidence: str,
        now_ms: int,
        deliveries: list[Delivery],
    ) -> tuple[int, bool]:
        def raise_(conn: Conn) -> tuple[int, bool]:
            row = conn.execute(
                "SELECT id FROM alert WHERE group_key = ? AND state <> 'resolved'", (group_key,)
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE alert SET occurrences = occurrences + 1, last_ms = ?, evidence = ?"
                    " WHERE id = ?",
                    (now_ms, evidence, row[0]),
                )
                return int(row[0]), False
            cur = conn.execute(
                "INSERT INTO alert (group_key, rule_id, kind, subject, state, first_ms, last_ms,"
                " occurrences, evidence) VALUES (?, ?, ?, ?, 'open', ?, ?, 1, ?)",
                (group_key, rule_id, kind, subject, now_ms, now_ms, evidence),
            )
            alert_id = int(cur.lastrowid or 0)
            conn.execute(
                "INSERT INTO alert_audit (alert_id, at_ms, action, actor, note)"
                " VALUES (?, ?, 'opened', 'rule', ?)",
                (alert_id, now_ms, rule_id),
            )
            conn.executemany(
                "INSERT INTO alert_outbox (alert_id, channel, target, payload, next_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                [(alert_id, d.channel, d.target, d.payload, now_ms) for d in deliveries],
            )
            return alert_id, True

        return await self._write(lambda c: self._tx(c, lambda: raise_(c)))

    async def set_state(
        self, alert_id: int, state: str, *, actor: str, note: str, now_ms: int
    ) -> bool:
        def set_(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE alert SET state = ? WHERE id = ? AND state IN ('open', 'acknowledged')",
                (state, alert_id),
            )
            if cur.rowcount != 1:
                return False
            conn.execute(
                "INSERT INTO alert_audit (alert_id, at_ms, action, actor, note)"
                " VALUES (?, ?, ?, ?, ?)",
                (alert_id, now_ms, state, actor, note),
            )
            return True

        return await self._write(lambda c: self._tx(c, lambda: set_(c)))

    async def list_alerts(self, state: str | None = None) -> list[AlertRecord]:
        sql = _SELECT_ALERTS
        rows = await self._fetch_rows(
            sql + (" WHERE state = ? ORDER BY id" if state else " ORDER BY id"),
            (state,) if state else (),
        )
        return [AlertRecord(*r) for r in rows]

    async def audit(self, alert_id: int) -> list[AuditEntry]:
        rows = await self._fetch_rows(
            "SELECT alert_id, at_ms, action, actor, note FROM alert_audit WHERE alert_id = ?"
            " ORDER BY id",
            (alert_id,),
        )
        return [AuditEntry(*r) for r in rows]

    async def due_deliveries(self, now_ms: int, limit: int) -> list[OutboxItem]:
        rows = await self._fetch_rows(
            "SELECT id, alert_id, channel, target, payload, attempts, next_ms FROM alert_outbox"
            " WHERE sent_ms IS NULL AND next_ms <= ? ORDER BY id LIMIT ?",
            (now_ms, limit),
        )
        return [OutboxItem(*r) for r in rows]

    async def claim_deliveries(self, now_ms: int, limit: int, lease_ms: int) -> list[OutboxItem]:
        # One writer: the read and the move of the retry time are one transaction.
        def claim(conn: Conn) -> list[OutboxItem]:
            rows = conn.execute(
                "SELECT id, alert_id, channel, target, payload, attempts, next_ms"
                " FROM alert_outbox WHERE sent_ms IS NULL AND next_ms <= ? ORDER BY id LIMIT ?",
                (now_ms, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE alert_outbox SET next_ms = ? WHERE id = ?",
                [(now_ms + lease_ms, r[0]) for r in rows],
            )
            return [OutboxItem(*r) for r in rows]

        return await self._write(lambda c: self._tx(c, lambda: claim(c)))

    async def mark_delivered(self, item_id: int, now_ms: int) -> None:
        def mark(conn: Conn) -> None:
            conn.execute(
                "UPDATE alert_outbox SET sent_ms = ?, attempts = attempts + 1 WHERE id = ?",
                (now_ms, item_id),
            )

        await self._write(lambda c: self._tx(c, lambda: mark(c)))

    async def mark_failed(self, item_id: int, error: str, next_ms: int) -> None:
        def mark(conn: Conn) -> None:
            conn.execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, next_ms = ?, last_error = ?"
                " WHERE id = ?",
                (next_ms, error[:500], item_id),
            )

        await self._write(lambda c: self._tx(c, lambda: mark(c)))
