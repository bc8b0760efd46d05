"""`cloud.storage.alerts.AlertStore` on PostgreSQL."""

from __future__ import annotations

from cloud.storage.alerts import AlertRecord, AuditEntry, Delivery, OutboxItem
from cloud.storage.postgres_db import PostgresDb, translate

_SELECT_ALERTS = (
    "SELECT id, group_key, rule_id, kind, subject, state, first_ms, last_ms, occurrences,"
    " evidence FROM alert"
)


class PostgresAlerts(PostgresDb):
    async def put_rule(self, rule_id: str, body: str, now_ms: int) -> None:
        await self._rowcount(
            "INSERT INTO alert_rule (id, body, updated_ms) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET body = excluded.body,"
            " updated_ms = excluded.updated_ms",
            (rule_id, body, now_ms),
        )

    async def list_rules(self) -> list[tuple[str, str]]:
        rows = await self._fetchall("SELECT id, body FROM alert_rule ORDER BY id")
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
        async with self._pool.connection() as conn, conn.transaction():
            with translate():
                # One evaluator at a time per group: the lock makes check-then-insert atomic.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (group_key,))
                cur = await conn.execute(
                    "SELECT id FROM alert WHERE group_key = %s AND state <> 'resolved'",
                    (group_key,),
                )
                row = await cur.fetchone()
                if row is not None:
                    await conn.execute(
                        "UPDATE alert SET occurrences = occurrences + 1, last_ms = %s,"
                        " evidence = %s WHERE id = %s",
                        (now_ms, evidence, row[0]),
                    )
                    return int(row[0]), False
                cur = await conn.execute(
                    "INSERT INTO alert (group_key, rule_id, kind, subject, state, first_ms,"
                    " last_ms, occurrences, evidence)"
                    " VALUES (%s, %s, %s, %s, 'open', %s, %s, 1, %s) RETURNING id",
                    (group_key, rule_id, kind, subject, now_ms, now_ms, evidence),
                )
                inserted = await cur.fetchone()
                assert inserted is not None
                alert_id = int(inserted[0])
                await conn.execute(
                    "INSERT INTO alert_audit (alert_id, at_ms, action, actor, note)"
                    " VALUES (%s, %s, 'opened', 'rule', %s)",
                    (alert_id, now_ms, rule_id),
                )
                for d in deliveries:
                    await conn.execute(
                        "INSERT INTO alert_outbox (alert_id, channel, target, payload, next_ms)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (alert_id, d.channel, d.target, d.payload, now_ms),
                    )
                return alert_id, True

    async def set_state(
        self, alert_id: int, state: str, *, actor: str, note: str, now_ms: int
    ) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            with translate():
                cur = await conn.execute(
                    "UPDATE alert SET state = %s WHERE id = %s"
                    " AND state IN ('open', 'acknowledged')",
                    (state, alert_id),
                )
                if cur.rowcount != 1:
                    return False
                await conn.execute(
                    "INSERT INTO alert_audit (alert_id, at_ms, action, actor, note)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (alert_id, now_ms, state, actor, note),
                )
                return True

    async def list_alerts(self, state: str | None = None) -> list[AlertRecord]:
        sql = _SELECT_ALERTS
        if state:
            rows = await self._fetchall(sql + " WHERE state = %s ORDER BY id", (state,))
        else:
            rows = await self._fetchall(sql + " ORDER BY id")
        return [AlertRecord(*r) for r in rows]

    async def audit(self, alert_id: int) -> list[AuditEntry]:
        rows = await self._fetchall(
            "SELECT alert_id, at_ms, action, actor, note FROM alert_audit WHERE alert_id = %s"
            " ORDER BY id",
            (alert_id,),
        )
        return [AuditEntry(*r) for r in rows]

    async def due_deliveries(self, now_ms: int, limit: int) -> list[OutboxItem]:
        rows = await self._fetchall(
            "SELECT id, alert_id, channel, target, payload, attempts, next_ms FROM alert_outbox"
            " WHERE sent_ms IS NULL AND next_ms <= %s ORDER BY id LIMIT %s",
            (now_ms, limit),
        )
        return [OutboxItem(*r) for r in rows]

    async def claim_deliveries(self, now_ms: int, limit: int, lease_ms: int) -> list[OutboxItem]:
        rows = await self._fetchall(
            "UPDATE alert_outbox o SET next_ms = %s FROM ("
            " SELECT id FROM alert_outbox WHERE sent_ms IS NULL AND next_ms <= %s"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) due WHERE o.id = due.id"
            " RETURNING o.id, o.alert_id, o.channel, o.target, o.payload, o.attempts, %s",
            (now_ms + lease_ms, now_ms, limit, now_ms),
        )
        return sorted((OutboxItem(*r) for r in rows), key=lambda i: i.item_id)

    async def mark_delivered(self, item_id: int, now_ms: int) -> None:
        await self._rowcount(
            "UPDATE alert_outbox SET sent_ms = %s, attempts = attempts + 1 WHERE id = %s",
            (now_ms, item_id),
        )

    async def mark_failed(self, item_id: int, error: str, next_ms: int) -> None:
        await self._rowcount(
            "UPDATE alert_outbox SET attempts = attempts + 1, next_ms = %s, last_error = %s"
            " WHERE id = %s",
            (next_ms, error[:500], item_id),
        )
