"""The SQLite store's batch path: key look-up, chain head, and the batch transaction.

Durability: `synchronous=FULL` by default, so a batch acknowledged with 200 survives a power cut
(the gateway deletes it on that answer). Batches that wait for the writer share one transaction
and one fsync (group commit, `_flush`), each in its own savepoint: still all-or-nothing per batch.
The transaction keeps the contract written in `cloud.storage.batches`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Sequence

from cloud.errors import IntegrityError, StoreError
from cloud.storage import chain, queries, rollups
from cloud.storage.batches import BatchMeta, BatchResult, Outcome
from cloud.storage.devices import ChainHead, DeviceStatus, KeyRecord, KeyStatus, key_usable
from cloud.storage.rows import key_record
from cloud.storage.sqlite_db import PH, Conn, SqliteDb, translate
from wire.models import Batch, SeriesKey

_SERIES_CACHE_MAX = 1_000_000
_GROUP_MAX = 64  # batches per group commit
_Job = tuple[BatchMeta, Batch, "asyncio.Future[BatchResult]"]


class SqliteBatches(SqliteDb):
    """`BatchStore` on SQLite."""

    def __init__(
        self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5_000
    ) -> None:
        super().__init__(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        self._series_ids: dict[tuple[str, SeriesKey], int] = {}
        self._pending: list[_Job] = []
        self._flusher: asyncio.Task[None] | None = None

    async def _before_close(self) -> None:
        if self._flusher is not None:
            await self._flusher
        await super()._before_close()

    async def get_key(self, keyid: str) -> KeyRecord | None:
        sql = queries.fmt(queries.SELECT_KEY, PH)
        row = await self._read(lambda c: c.execute(sql, (keyid,)).fetchone())
        return None if row is None else key_record(row)

    async def chain_head(self, device_id: str) -> ChainHead | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT head_seq, head_digest FROM device WHERE id = ?", (device_id,)
            ).fetchone()
        )
        return None if row is None else ChainHead(device_id, int(row[0]), bytes(row[1]))

    async def store_batch(self, meta: BatchMeta, batch: Batch) -> BatchResult:
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append((meta, batch, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="sqlite-group-commit")
        return await future

    async def _flush(self) -> None:
        """Group commit: every batch waiting when the writer is free goes into one transaction,
        each inside its own savepoint, so one fsync acknowledges them all and a failing batch
        rolls back alone. Answers are given only after the COMMIT."""
        while self._pending:
            jobs, self._pending = self._pending[:_GROUP_MAX], self._pending[_GROUP_MAX:]
            try:
                results, new_ids = await self._write(
                    functools.partial(self._store_group, jobs=jobs)
                )
            except Exception as exc:  # the COMMIT itself failed: nothing of the group is stored
                results, new_ids = [exc] * len(jobs), {}
            if len(self._series_ids) > _SERIES_CACHE_MAX:
                self._series_ids.clear()
            self._series_ids.update(new_ids)  # only after the commit: a rolled-back id is no id
            for (_, _, future), result in zip(jobs, results, strict=True):
                if future.done():  # the request went away; its batch is stored all the same
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _store_group(
        self, conn: Conn, *, jobs: list[_Job]
    ) -> tuple[list[BatchResult | Exception], dict[tuple[str, SeriesKey], int]]:
        results: list[BatchResult | Exception] = []
        all_new: dict[tuple[str, SeriesKey], int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for meta, batch, _ in jobs:
                new_ids: dict[tuple[str, SeriesKey], int] = {}
                conn.execute("SAVEPOINT batch")
                try:
                    results.append(self._append_locked(conn, meta, batch, new_ids))
                except (sqlite3.Error, StoreError) as exc:
                    conn.execute("ROLLBACK TO batch")
                    results.append(translate(exc) if isinstance(exc, sqlite3.Error) else exc)
                else:
                    all_new.update(new_ids)
                conn.execute("RELEASE batch")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results, all_new

    def _append_locked(
        self,
        conn: Conn,
        meta: BatchMeta,
        batch: Batch,
        new_ids: dict[tuple[str, SeriesKey], int],
    ) -> BatchResult:
        head = conn.execute(
            queries.fmt(queries.SELECT_HEAD_AND_KEY, PH), (meta.keyid, meta.device_id)
        ).fetchone()
        if head is None:
            raise IntegrityError(f"device {meta.device_id!r} is not registered")
        head_seq, head_digest = int(head[0]), bytes(head[1])
        if head[3] is not None and not key_usable(
            DeviceStatus(head[2]), KeyStatus(head[3]), head[4], meta.received_ms
        ):
            return BatchResult(Outcome.KEY_REFUSED, meta.seq, head_seq + 1)
        verdict = chain.classify(head_seq, head_digest, meta)
        if verdict.step is chain.Step.LOOKUP:
            stored = conn.execute(
                "SELECT digest FROM batch WHERE device_id = ? AND seq = ?",
                (meta.device_id, meta.seq),
            ).fetchone()
            result = chain.classify_stored(head_seq, None if stored is None else stored[0], meta)
            if result.outcome is not Outcome.DUPLICATE:
                self._chain_event(conn, meta, result)
            return result
        if verdict.result is not None:
            self._chain_event(conn, meta, verdict.result)
            return verdict.result

        conn.execute(
            queries.fmt(queries.INSERT_BATCH, PH),
            queries.batch_params(meta, batch),
        )
        ids: dict[SeriesKey, int] = {}
        select_id = queries.fmt(queries.SELECT_SERIES_ID, PH)
        for s in batch.series:
            cache_key = (meta.device_id, s.key)
            sid = self._series_ids.get(cache_key)
            if sid is None:
                values = chain.series_tuple(meta.device_id, s.key)
                conn.execute(
                    "INSERT OR IGNORE INTO series"
                    " (device_id, metric, unit, site, area, process, medium)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                sid = int(conn.execute(select_id, values).fetchone()[0])
                new_ids[cache_key] = sid
            ids[s.key] = sid
        rows = list(chain.reading_rows(batch, ids))
        conn.executemany(
            "INSERT INTO reading (series_id, ts_ms, value, quality) VALUES (?, ?, ?, ?)", rows
        )
        rollups.sqlite_merge(conn, rows)
        if batch.events:
            conn.executemany(
                queries.fmt(queries.INSERT_EVENT, PH),
                (
                    (
                        meta.device_id,
                        meta.seq,
                        e.kind,
                        e.ts_ms,
                        e.quality,
                        json.dumps(dict(e.attrs)),
                    )
                    for e in batch.events
                ),
            )
        c = batch.counters
        conn.execute(
            queries.fmt(queries.UPDATE_HEAD, PH),
            (
                meta.seq,
                meta.digest,
                meta.received_ms,
                batch.boot_id,
                batch.reading_count(),
                c.dropped_buffer_full,
                c.dropped_damaged,
                c.rejected_invalid,
                int(batch.clock.state),
                batch.clock.offset_ms,
                meta.sig_created * 1000 - meta.received_ms,
                meta.device_id,
            ),
        )
        return BatchResult(Outcome.STORED, meta.seq, meta.seq + 1)

    @staticmethod
    def _chain_event(conn: Conn, meta: BatchMeta, result: BatchResult) -> None:
        kind = chain.chain_event_kind(result)
        cur = conn.execute(
            "INSERT OR IGNORE INTO chain_event"
            " (device_id, kind, seq, expected_seq, digest, reason, at_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            conn.execute(queries.fmt(bump, PH), (meta.device_id,))

    async def bulk_insert_readings(self, rows: Sequence[tuple[int, int, float, int]]) -> None:
        def insert(conn: Conn) -> None:
            conn.executemany(
                "INSERT INTO reading (series_id, ts_ms, value, quality) VALUES (?, ?, ?, ?)",
                rows,
            )
            rollups.sqlite_merge(conn, rows)

        await self._write(lambda c: self._tx(c, lambda: insert(c)))
