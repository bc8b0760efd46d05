"""The PostgreSQL store's batch path: key look-up, chain head, and the batch transaction.

Several receiver processes can share one database: the batch transaction locks the device row
(`SELECT ... FOR UPDATE`), so concurrent copies of a batch, from any process, serialise there and
the second one finds the first one's batch row (READ COMMITTED: each statement sees what was
committed before it started).

Two ways to run that transaction, with the same outcomes (the storage tests run both):
- a small batch (at most `small_batch_max` readings: a gateway that keeps up flushes every second)
  is ONE statement, `SELECT ... FROM ingest_batch(...)` (migration 0002, PL/pgSQL): the lock, the
  chain decision and every write in one round trip, one implicit transaction on the autocommit
  connection; its arrays carry the readings and events;
- a large batch locks the row and decides in Python (`cloud.storage.chain`), then sends the
  readings with `COPY ... FROM STDIN` (text format, built in one string) and the other writes and
  the COMMIT pipelined: two round trips plus the COPY.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from cloud.errors import IntegrityError, StoreError
from cloud.storage import chain, postgres_sql, queries
from cloud.storage.batches import BatchMeta, BatchResult, Outcome
from cloud.storage.devices import ChainHead, DeviceStatus, KeyRecord, KeyStatus, key_usable
from cloud.storage.postgres_db import PH, AConn, PostgresDb, translate
from cloud.storage.rows import key_record
from wire.models import Batch, SeriesKey

# Readings up to which a batch is one `ingest_batch` call. Store alone, 16 writers: at 1,000
# readings the call does 634 batches/s to 483 for lock + COPY + pipelined writes; at 3,000 COPY
# wins (286 to 243).
SMALL_BATCH_MAX = 1_000
_SERIES_CACHE_MAX = 1_000_000


class PostgresBatches(PostgresDb):
    """`BatchStore` on PostgreSQL."""

    def __init__(
        self, dsn: str, *, small_batch_max: int = SMALL_BATCH_MAX, **pool_options: int
    ) -> None:
        """`pool_options`: `PostgresDb`'s (pool size, connect, lock and statement timeouts)."""
        super().__init__(dsn, **pool_options)
        self._series_ids: dict[tuple[str, SeriesKey], int] = {}
        self.small_batch_max = small_batch_max  # -1: never

    async def get_key(self, keyid: str) -> KeyRecord | None:
        row = await self._fetchone(queries.fmt(queries.SELECT_KEY, PH), (keyid,))
        return None if row is None else key_record(row)

    async def chain_head(self, device_id: str) -> ChainHead | None:
        row = await self._fetchone(
            "SELECT head_seq, head_digest FROM device WHERE id = %s", (device_id,)
        )
        return None if row is None else ChainHead(device_id, int(row[0]), bytes(row[1]))

    async def store_batch(self, meta: BatchMeta, batch: Batch) -> BatchResult:
        if batch.reading_count() <= self.small_batch_max:
            return await self._store_call(meta, batch)
        new_ids: dict[tuple[str, SeriesKey], int] = {}
        async with self._pool.connection() as conn:
            with translate():
                try:
                    result = await self._store_tx(conn, meta, batch, new_ids)
                except BaseException:
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        with contextlib.suppress(psycopg.Error):
                            await conn.execute("ROLLBACK")
                    raise
        if len(self._series_ids) > _SERIES_CACHE_MAX:
            self._series_ids.clear()
        self._series_ids.update(new_ids)  # only after the commit: a rolled-back id is no id
        return result

    async def _store_call(self, meta: BatchMeta, batch: Batch) -> BatchResult:
        """The whole transaction as one `ingest_batch(...)` statement (migration 0002)."""
        cached = self._series_ids
        device = meta.device_id
        keys = [s.key for s in batch.series]
        known = [cached.get((device, k)) for k in keys]
        params = postgres_sql.call_params(meta, batch, known)
        row = await self._fetchone(postgres_sql.INGEST_CALL, params)
        if row is None:  # pragma: no cover - the function always returns one row
            raise StoreError("ingest_batch returned no row")
        outcome, expected_seq, reason, ids = row
        if outcome == "unknown_device":
            raise IntegrityError(f"device {device!r} is not registered")
        if outcome == Outcome.STORED:
            if len(cached) > _SERIES_CACHE_MAX:
                cached.clear()
            for key, sid in zip(keys, ids, strict=True):
                cached[(device, key)] = int(sid)
        return BatchResult(Outcome(outcome), meta.seq, int(expected_seq), reason)

    async def _store_tx(
        self,
        conn: AConn,
        meta: BatchMeta,
        batch: Batch,
        new_ids: dict[tuple[str, SeriesKey], int],
    ) -> BatchResult:
        """One transaction in as few round trips as the decisions allow: BEGIN with the row
        lock, then (for an append) every write with the COMMIT, pipelined."""
        cur = conn.cursor()
        async with conn.pipeline():
            await cur.execute("BEGIN")
            await cur.execute(
                queries.fmt(queries.SELECT_HEAD_AND_KEY, PH) + " FOR UPDATE OF d",
                (meta.keyid, meta.device_id),
            )
        head = await cur.fetchone()
        if head is None:
            raise IntegrityError(f"device {meta.device_id!r} is not registered")
        head_seq, head_digest = int(head[0]), bytes(head[1])
        if head[3] is not None and not key_usable(
            DeviceStatus(head[2]), KeyStatus(head[3]), head[4], meta.received_ms
        ):
            await conn.execute("COMMIT")
            return BatchResult(Outcome.KEY_REFUSED, meta.seq, head_seq + 1)
        verdict = chain.classify(head_seq, head_digest, meta)
        if verdict.step is chain.Step.LOOKUP:
            await cur.execute(
                "SELECT digest FROM batch WHERE device_id = %s AND seq = %s",
                (meta.device_id, meta.seq),
            )
            stored = await cur.fetchone()
            result = chain.classify_stored(
                head_seq, None if stored is None else bytes(stored[0]), meta
            )
            if result.outcome is not Outcome.DUPLICATE:
                await self._chain_event(cur, meta, result)
            await conn.execute("COMMIT")
            return result
        if verdict.result is not None:
            await self._chain_event(cur, meta, verdict.result)
            await conn.execute("COMMIT")
            return verdict.result

        ids: dict[SeriesKey, int] = {}
        for s in batch.series:
            cache_key = (meta.device_id, s.key)
            sid = self._series_ids.get(cache_key)
            if sid is None:
                sid = await self._series_id(cur, chain.series_tuple(meta.device_id, s.key))
                new_ids[cache_key] = sid
            ids[s.key] = sid

        n_readings = batch.reading_count()
        if n_readings > 0:
            async with cur.copy("COPY reading (series_id, ts_ms, value, quality) FROM STDIN") as cp:
                await cp.write(postgres_sql.copy_text(chain.reading_rows(batch, ids)))
        c = batch.counters
        async with conn.pipeline():
            await cur.execute(
                queries.fmt(queries.INSERT_BATCH, PH),
                queries.batch_params(meta, batch),
            )
            if batch.events:
                await cur.executemany(
                    queries.fmt(queries.INSERT_EVENT, PH),
                    [
                        (meta.device_id, meta.seq, e.kind, e.ts_ms, e.quality, _json(e.attrs))
                        for e in batch.events
                    ],
                )
            await cur.execute(
                queries.fmt(queries.UPDATE_HEAD, PH),
                (
                    meta.seq,
                    meta.digest,
                    meta.received_ms,
                    batch.boot_id,
                    n_readings,
                    c.dropped_buffer_full,
                    c.dropped_damaged,
                    c.rejected_invalid,
                    int(batch.clock.state),
                    batch.clock.offset_ms,
                    meta.sig_created * 1000 - meta.received_ms,
                    meta.device_id,
                ),
            )
            await cur.execute("COMMIT")
        return BatchResult(Outcome.STORED, meta.seq, meta.seq + 1)

    @staticmethod
    async def _series_id(cur: psycopg.AsyncCursor[Any], values: tuple[str, ...]) -> int:
        await cur.execute(
            "INSERT INTO series (device_id, metric, unit, site, area, process, medium)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            values,
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute(queries.fmt(queries.SELECT_SERIES_ID, PH), values)
            row = await cur.fetchone()
        if row is None:  # pragma: no cover - the insert or the select finds it
            raise IntegrityError("series row vanished")
        return int(row[0])

    @staticmethod
    async def _chain_event(
        cur: psycopg.AsyncCursor[Any], meta: BatchMeta, result: BatchResult
    ) -> None:
        kind = chain.chain_event_kind(result)
        await cur.execute(
            "INSERT INTO chain_event (device_id, kind, seq, expected_seq, digest, reason, at_ms)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                meta.device_id,
                kind,
                meta.seq,
                result.expected_seq,
                meta.digest,
                result.reason,
                meta.received_ms,
            ),
        )
        if cur.rowcount == 1:
            bump = queries.BUMP_GAPS if kind == "gap" else queries.BUMP_FORKS
            await cur.execute(queries.fmt(bump, PH), (meta.device_id,))

    async def bulk_insert_readings(self, rows: Sequence[tuple[int, int, float, int]]) -> None:
        async with self._pool.connection() as conn:
            with translate():
                async with conn.transaction(), conn.cursor() as cur:
                    sql = "COPY reading (series_id, ts_ms, value, quality) FROM STDIN"
                    async with cur.copy(sql) as cp:
                        await cp.write(postgres_sql.copy_text(iter(rows)))


def _json(attrs: tuple[tuple[str, Any], ...]) -> Jsonb:
    return Jsonb(dict(attrs))
