"""The embedded store: one SQLite file in WAL mode, for a single receiver process.

Threads: one writer thread owns the only writing connection, so writes never contend inside the
process; one reader thread serves key look-ups and queries from its own connection, which WAL lets
run beside the writer. Every call hops to its thread with `run_in_executor`; sqlite3 exceptions
are translated to `cloud.errors` there and never leave this module.

Durability: `synchronous=FULL` by default, so a batch acknowledged with 200 survives a power cut
(the gateway deletes it on that answer). Batches that wait for the writer share one transaction
and one fsync (group commit, `_flush`), each in its own savepoint: still all-or-nothing per batch.

Several receiver processes on one file are possible
(`BEGIN IMMEDIATE` + `busy_timeout`) but PostgreSQL is the multi-receiver backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cloud.errors import IntegrityError, SchemaError, StoreError, StoreUnavailableError
from cloud.storage import chain, queries
from cloud.storage.base import (
    Agg,
    BatchMeta,
    BucketPoint,
    ChainEvent,
    ChainHead,
    DeviceState,
    DeviceStatus,
    EnrollRequest,
    EventRecord,
    IngestResult,
    KeyRecord,
    KeyStatus,
    LatestValue,
    Outcome,
    Point,
    RotateResult,
    SeriesFilter,
    SeriesInfo,
    TokenRecord,
)
from cloud.storage.migrations import latest_version, migrations
from cloud.storage.rows import device_state, event_record, key_record, series_info
from wire.models import GENESIS, Batch, SeriesKey

T = TypeVar("T")
Conn = sqlite3.Connection
_P = "?"
_SERIES_CACHE_MAX = 1_000_000
_GROUP_MAX = 64  # batches per group commit


def _translate(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(f"sqlite: {exc}")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return StoreUnavailableError(f"sqlite: {exc}")
    return StoreError(f"sqlite: {exc}")


_Job = tuple[BatchMeta, Batch, "asyncio.Future[IngestResult]"]


class SqliteStore:
    kind = "sqlite"

    def __init__(
        self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5_000
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise StoreError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: Conn | None = None
        self._rconn: Conn | None = None
        self._series_ids: dict[tuple[str, SeriesKey], int] = {}
        self._pending: list[_Job] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self) -> Conn:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def open(self) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._wconn = await self._run(self._writer, lambda: self._connect())
        self._rconn = await self._run(self._reader, lambda: self._connect())

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher
        for executor, conn in ((self._writer, self._wconn), (self._reader, self._rconn)):
            if executor is not None and conn is not None:
                with contextlib.suppress(StoreError):
                    await self._run(executor, conn.close)
            if executor is not None:
                executor.shutdown(wait=True)
        self._writer = self._reader = None
        self._wconn = self._rconn = None

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        def call() -> T:
            try:
                return fn()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def _write(self, fn: Callable[[Conn], T]) -> T:
        if self._writer is None or self._wconn is None:
            raise StoreUnavailableError("sqlite store is not open")
        conn = self._wconn
        return await self._run(self._writer, lambda: fn(conn))

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        if self._reader is None or self._rconn is None:
            raise StoreUnavailableError("sqlite store is not open")
        conn = self._rconn
        return await self._run(self._reader, lambda: fn(conn))

    async def fetch_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """`RowReader`: one read-only statement on the reader thread (the figures' queries)."""
        rows: list[tuple[Any, ...]] = await self._read(lambda c: c.execute(sql, params).fetchall())
        return rows

    @staticmethod
    def _tx(conn: Conn, body: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- schema -----------------------------------------------------------------------------

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

    # -- devices and keys -------------------------------------------------------------------

    async def get_key(self, keyid: str) -> KeyRecord | None:
        sql = queries.fmt(queries.SELECT_KEY, _P)
        row = await self._read(lambda c: c.execute(sql, (keyid,)).fetchone())
        return None if row is None else key_record(row)

    async def chain_head(self, device_id: str) -> ChainHead | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT head_seq, head_digest FROM device WHERE id = ?", (device_id,)
            ).fetchone()
        )
        return None if row is None else ChainHead(device_id, int(row[0]), bytes(row[1]))

    async def create_token(self, token: TokenRecord) -> None:
        def create(conn: Conn) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO device (id, status, head_digest, created_ms)"
                " VALUES (?, 'pending', ?, ?)",
                (token.device_id, GENESIS, token.created_ms),
            )
            conn.execute(
                "INSERT INTO enroll_token (id, token_hash, device_id, created_ms, expires_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    token.token_id,
                    token.token_hash,
                    token.device_id,
                    token.created_ms,
                    token.expires_ms,
                ),
            )

        await self._write(lambda c: self._tx(c, lambda: create(c)))

    async def enroll(self, request: EnrollRequest, *, max_failures: int) -> ChainHead | None:
        def enroll(conn: Conn) -> ChainHead | None:
            row = conn.execute(
                "SELECT token_hash, device_id, expires_ms, used_ms, used_by_keyid,"
                " failed_attempts FROM enroll_token WHERE id = ?",
                (request.token_id,),
            ).fetchone()
            if row is None:
                return None
            verdict = chain.judge_token(
                chain.StoredToken(bytes(row[0]), row[1], row[2], row[3], row[4], row[5]),
                token_hash=request.token_hash,
                device_id=request.device_id,
                keyid=request.keyid,
                now_ms=request.now_ms,
                max_failures=max_failures,
            )
            if verdict is chain.TokenVerdict.FAIL:
                conn.execute(
                    "UPDATE enroll_token SET failed_attempts = failed_attempts + 1 WHERE id = ?",
                    (request.token_id,),
                )
                return None
            if verdict is chain.TokenVerdict.REFUSE:
                return None
            if verdict is chain.TokenVerdict.CONSUME:
                owner = conn.execute(
                    "SELECT device_id FROM device_key WHERE keyid = ?", (request.keyid,)
                ).fetchone()
                if owner is not None:  # a key enrols once, for one device
                    return None
                conn.execute(
                    "UPDATE enroll_token SET used_ms = ?, used_by_keyid = ? WHERE id = ?",
                    (request.now_ms, request.keyid, request.token_id),
                )
                conn.execute(
                    "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                    " VALUES (?, ?, ?, 'active', ?)",
                    (request.keyid, request.device_id, request.public_key, request.now_ms),
                )
                conn.execute(
                    "UPDATE device SET status = 'active' WHERE id = ? AND status = 'pending'",
                    (request.device_id,),
                )
            head = conn.execute(
                "SELECT head_seq, head_digest FROM device WHERE id = ?", (request.device_id,)
            ).fetchone()
            return ChainHead(request.device_id, int(head[0]), bytes(head[1]))

        return await self._write(lambda c: self._tx(c, lambda: enroll(c)))

    async def rotate_key(
        self,
        device_id: str,
        old_keyid: str,
        new_keyid: str,
        new_public_key: bytes,
        *,
        now_ms: int,
        overlap_ms: int,
    ) -> RotateResult | None:
        def rotate(conn: Conn) -> RotateResult | None:
            old = conn.execute(
                "SELECT device_id, status, not_after_ms FROM device_key WHERE keyid = ?",
                (old_keyid,),
            ).fetchone()
            if old is None or old[0] != device_id:
                return None
            new = conn.execute(
                "SELECT device_id, status FROM device_key WHERE keyid = ?", (new_keyid,)
            ).fetchone()
            if new is not None:  # a retry of a rotation that already happened
                if new[0] != device_id or new[1] == KeyStatus.REVOKED or old[2] is None:
                    return None
                return RotateResult(new_keyid, old_keyid, int(old[2]))
            if old[1] != KeyStatus.ACTIVE:
                return None
            not_after = now_ms + overlap_ms
            conn.execute(
                "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                " VALUES (?, ?, ?, 'active', ?)",
                (new_keyid, device_id, new_public_key, now_ms),
            )
            conn.execute(
                "UPDATE device_key SET status = 'retiring', not_after_ms = ? WHERE keyid = ?",
                (not_after, old_keyid),
            )
            return RotateResult(new_keyid, old_keyid, not_after)

        return await self._write(lambda c: self._tx(c, lambda: rotate(c)))

    async def list_devices(self) -> list[DeviceState]:
        rows = await self._read(lambda c: c.execute(queries.SELECT_DEVICES).fetchall())
        return [device_state(r) for r in rows]

    async def get_device(self, device_id: str) -> DeviceState | None:
        def get(conn: Conn) -> DeviceState | None:
            row = conn.execute(queries.fmt(queries.SELECT_DEVICE, _P), (device_id,)).fetchone()
            if row is None:
                return None
            keys = conn.execute(
                queries.fmt(queries.SELECT_DEVICE_KEYS, _P), (device_id,)
            ).fetchall()
            events = conn.execute(
                "SELECT kind, seq, expected_seq, reason, at_ms FROM chain_event"
                " WHERE device_id = ? ORDER BY id DESC LIMIT 50",
                (device_id,),
            ).fetchall()
            return device_state(
                row,
                keys=tuple(key_record(k) for k in keys),
                chain_events=tuple(ChainEvent(*e) for e in events),
            )

        return await self._read(get)

    async def set_device_status(self, device_id: str, status: DeviceStatus) -> bool:
        def update(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE device SET status = ? WHERE id = ? AND status != 'pending'",
                (str(status), device_id),
            )
            return cur.rowcount == 1

        return await self._write(update)

    async def revoke_key(self, keyid: str, now_ms: int) -> bool:
        def update(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE device_key SET status = 'revoked', revoked_ms = ?"
                " WHERE keyid = ? AND status != 'revoked'",
                (now_ms, keyid),
            )
            return cur.rowcount == 1

        return await self._write(update)

    async def revoke_device_keys(self, device_id: str, now_ms: int) -> int:
        def update(conn: Conn) -> int:
            cur = conn.execute(
                "UPDATE device_key SET status = 'revoked', revoked_ms = ?"
                " WHERE device_id = ? AND status != 'revoked'",
                (now_ms, device_id),
            )
            return cur.rowcount

        return await self._write(update)

    # -- ingest -----------------------------------------------------------------------------

    async def ingest(self, meta: BatchMeta, batch: Batch) -> IngestResult:
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
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
                    functools.partial(self._ingest_group, jobs=jobs)
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

    def _ingest_group(
        self, conn: Conn, *, jobs: list[_Job]
    ) -> tuple[list[IngestResult | Exception], dict[tuple[str, SeriesKey], int]]:
        results: list[IngestResult | Exception] = []
        all_new: dict[tuple[str, SeriesKey], int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for meta, batch, _ in jobs:
                new_ids: dict[tuple[str, SeriesKey], int] = {}
                conn.execute("SAVEPOINT batch")
                try:
                    results.append(self._ingest_locked(conn, meta, batch, new_ids))
                except (sqlite3.Error, StoreError) as exc:
                    conn.execute("ROLLBACK TO batch")
                    results.append(_translate(exc) if isinstance(exc, sqlite3.Error) else exc)
                else:
                    all_new.update(new_ids)
                conn.execute("RELEASE batch")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results, all_new

    def _ingest_locked(
        self,
        conn: Conn,
        meta: BatchMeta,
        batch: Batch,
        new_ids: dict[tuple[str, SeriesKey], int],
    ) -> IngestResult:
        head = conn.execute(
            "SELECT head_seq, head_digest FROM device WHERE id = ?", (meta.device_id,)
        ).fetchone()
        if head is None:
            raise IntegrityError(f"device {meta.device_id!r} is not registered")
        head_seq, head_digest = int(head[0]), bytes(head[1])
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
            queries.fmt(queries.INSERT_BATCH, _P),
            (
                meta.device_id,
                meta.seq,
                meta.digest,
                meta.prev,
                meta.keyid,
                meta.sig_created,
                meta.received_ms,
                meta.content_encoding,
                meta.wire_bytes,
                batch.boot_id,
                batch.reading_count(),
                len(batch.events),
            ),
        )
        ids: dict[SeriesKey, int] = {}
        select_id = queries.fmt(queries.SELECT_SERIES_ID, _P)
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
        conn.executemany(
            "INSERT INTO reading (series_id, ts_ms, value, quality) VALUES (?, ?, ?, ?)",
            chain.reading_rows(batch, ids),
        )
        if batch.events:
            conn.executemany(
                queries.fmt(queries.INSERT_EVENT, _P),
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
            queries.fmt(queries.UPDATE_HEAD, _P),
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
        return IngestResult(Outcome.STORED, meta.seq, meta.seq + 1)

    @staticmethod
    def _chain_event(conn: Conn, meta: BatchMeta, result: IngestResult) -> None:
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
            conn.execute(queries.fmt(bump, _P), (meta.device_id,))

    async def bulk_insert_readings(self, rows: Sequence[tuple[int, int, float, int]]) -> None:
        def insert(conn: Conn) -> None:
            conn.executemany(
                "INSERT INTO reading (series_id, ts_ms, value, quality) VALUES (?, ?, ?, ?)",
                rows,
            )

        await self._write(lambda c: self._tx(c, lambda: insert(c)))

    # -- queries ----------------------------------------------------------------------------

    async def list_series(self, flt: SeriesFilter) -> list[SeriesInfo]:
        sql, params = queries.list_series(flt, _P)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [series_info(r) for r in rows]

    async def get_series(self, series_id: int) -> SeriesInfo | None:
        sql = queries.fmt(queries.SELECT_SERIES, _P)
        row = await self._read(lambda c: c.execute(sql, (series_id,)).fetchone())
        return None if row is None else series_info(row)

    async def readings(self, series_id: int, from_ms: int, to_ms: int, limit: int) -> list[Point]:
        sql = queries.fmt(queries.READINGS, _P)
        rows = await self._read(
            lambda c: c.execute(sql, (series_id, from_ms, to_ms, limit)).fetchall()
        )
        return [Point(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        # SQLite returns the bare column `value` from the row that holds max(ts_ms).
        if agg is Agg.LAST:
            sql = (
                "SELECT bucket, value, n FROM (SELECT (ts_ms / ?) * ? AS bucket, value,"
                " max(ts_ms) AS t, count(*) AS n FROM reading"
                " WHERE series_id = ? AND ts_ms >= ? AND ts_ms < ? GROUP BY bucket)"
                " ORDER BY bucket"
            )
        else:
            sql = queries.buckets(agg, _P, last_expr="")
        params = (bucket_ms, bucket_ms, series_id, from_ms, to_ms)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [BucketPoint(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def latest(self, flt: SeriesFilter) -> list[LatestValue]:
        sql, params = queries.latest(flt, _P, backend=self.kind)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [LatestValue(series_info(r[:8]), int(r[8]), float(r[9]), int(r[10])) for r in rows]

    async def events(
        self, device_id: str | None, kind: str | None, from_ms: int, to_ms: int, limit: int
    ) -> list[EventRecord]:
        sql, extra = queries.events(device_id, kind, _P)
        params: list[Any] = [from_ms, to_ms, *extra, limit]
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [event_record(r[:5], json.loads(r[5])) for r in rows]
