"""The production store: PostgreSQL through psycopg 3's async API, with a small connection pool.

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

Sessions run with `lock_timeout` and `statement_timeout`, so a stuck lock becomes a 503 the
gateway retries, not a request that hangs. psycopg exceptions are translated in `_translate`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from cloud.errors import IntegrityError, SchemaError, StoreError, StoreUnavailableError
from cloud.storage import chain, postgres_sql, queries
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

AConn = psycopg.AsyncConnection[Any]
_P = "%s"
_MIGRATION_LOCK = 0x7469_6572_6C65_7373 & 0x7FFF_FFFF_FFFF_FFFF  # "tierless"
# Readings up to which a batch is one `ingest_batch` call. Store alone, 16 writers: at 1,000
# readings the call does 634 batches/s to 483 for lock + COPY + pipelined writes; at 3,000 COPY
# wins (286 to 243).
SMALL_BATCH_MAX = 1_000
_SERIES_CACHE_MAX = 1_000_000
_IDLE = TransactionStatus.IDLE


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
        raise StoreUnavailableError(f"postgres: {type(exc).__name__}") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailableError(f"postgres unavailable: {exc}") from exc
    except psycopg.IntegrityError as exc:
        raise IntegrityError(f"postgres: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"postgres: {type(exc).__name__}: {exc}") from exc


class _Pool:
    """At most `size` connections, opened on demand, broken ones dropped on release."""

    def __init__(self, dsn: str, size: int, *, connect_timeout_s: int, settings: str) -> None:
        self._dsn = dsn
        self._size = size
        self._connect_timeout_s = connect_timeout_s
        self._settings = settings
        self._slots = asyncio.Semaphore(size)
        self._idle: list[AConn] = []

    async def _connect(self) -> AConn:
        conn = await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s
        )
        await conn.execute(self._settings)
        return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AConn]:
        async with self._slots:
            with _translate():
                conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            finally:
                await self._release(conn)

    async def fetchone(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """One statement on a pooled connection, its first row: `connection()` without the
        context-manager layers, for the per-request statements. psycopg errors pass through."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                cur = await conn.execute(sql, params)
                return await cur.fetchone()
            finally:
                await self._release(conn)

    async def _release(self, conn: AConn) -> None:
        if conn.closed or conn.broken or conn.pgconn.transaction_status != _IDLE:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg.Error):
                await conn.close()


class PostgresStore:
    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        connect_timeout_s: int = 5,
        lock_timeout_ms: int = 2_000,
        statement_timeout_ms: int = 30_000,
        small_batch_max: int = SMALL_BATCH_MAX,
    ) -> None:
        settings = (
            f"SET lock_timeout = {int(lock_timeout_ms)};"
            f" SET statement_timeout = {int(statement_timeout_ms)}"
        )
        self.dsn = dsn
        self._pool = _Pool(dsn, pool_size, connect_timeout_s=connect_timeout_s, settings=settings)
        self._series_ids: dict[tuple[str, SeriesKey], int] = {}
        self.small_batch_max = small_batch_max  # -1: never

    async def open(self) -> None:
        await self.ping()

    async def close(self) -> None:
        await self._pool.close()

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with _translate():
            return await self._pool.fetchone(sql, params)

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            with _translate():
                cur = await conn.execute(sql, params)
                return await cur.fetchall()

    async def fetch_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """`RowReader`: one read-only statement on a pooled connection (the figures' queries)."""
        return await self._fetchall(sql, params)

    async def _rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._pool.connection() as conn:
            with _translate():
                cur = await conn.execute(sql, params)
                return cur.rowcount

    # -- schema -----------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._fetchone("SELECT 1")

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
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
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

    # -- devices and keys -------------------------------------------------------------------

    async def get_key(self, keyid: str) -> KeyRecord | None:
        row = await self._fetchone(queries.fmt(queries.SELECT_KEY, _P), (keyid,))
        return None if row is None else key_record(row)

    async def chain_head(self, device_id: str) -> ChainHead | None:
        row = await self._fetchone(
            "SELECT head_seq, head_digest FROM device WHERE id = %s", (device_id,)
        )
        return None if row is None else ChainHead(device_id, int(row[0]), bytes(row[1]))

    async def create_token(self, token: TokenRecord) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            with _translate():
                await conn.execute(
                    "INSERT INTO device (id, status, head_digest, created_ms)"
                    " VALUES (%s, 'pending', %s, %s) ON CONFLICT (id) DO NOTHING",
                    (token.device_id, GENESIS, token.created_ms),
                )
                await conn.execute(
                    "INSERT INTO enroll_token (id, token_hash, device_id, created_ms, expires_ms)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (
                        token.token_id,
                        token.token_hash,
                        token.device_id,
                        token.created_ms,
                        token.expires_ms,
                    ),
                )

    async def enroll(self, request: EnrollRequest, *, max_failures: int) -> ChainHead | None:
        async with self._pool.connection() as conn, conn.transaction():
            with _translate():
                cur = await conn.execute(
                    "SELECT token_hash, device_id, expires_ms, used_ms, used_by_keyid,"
                    " failed_attempts FROM enroll_token WHERE id = %s FOR UPDATE",
                    (request.token_id,),
                )
                row = await cur.fetchone()
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
                    await conn.execute(
                        "UPDATE enroll_token SET failed_attempts = failed_attempts + 1"
                        " WHERE id = %s",
                        (request.token_id,),
                    )
                    return None
                if verdict is chain.TokenVerdict.REFUSE:
                    return None
                if verdict is chain.TokenVerdict.CONSUME:
                    cur = await conn.execute(
                        "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                        " VALUES (%s, %s, %s, 'active', %s) ON CONFLICT (keyid) DO NOTHING",
                        (request.keyid, request.device_id, request.public_key, request.now_ms),
                    )
                    if cur.rowcount != 1:  # a key enrols once, for one device
                        return None
                    await conn.execute(
                        "UPDATE enroll_token SET used_ms = %s, used_by_keyid = %s WHERE id = %s",
                        (request.now_ms, request.keyid, request.token_id),
                    )
                    await conn.execute(
                        "UPDATE device SET status = 'active' WHERE id = %s AND status = 'pending'",
                        (request.device_id,),
                    )
                cur = await conn.execute(
                    "SELECT head_seq, head_digest FROM device WHERE id = %s", (request.device_id,)
                )
                head = await cur.fetchone()
                if head is None:  # pragma: no cover - the token's foreign key forbids it
                    raise IntegrityError("token names a device that does not exist")
                return ChainHead(request.device_id, int(head[0]), bytes(head[1]))

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
        async with self._pool.connection() as conn, conn.transaction():
            with _translate():
                await conn.execute("SELECT 1 FROM device WHERE id = %s FOR UPDATE", (device_id,))
                cur = await conn.execute(
                    "SELECT device_id, status, not_after_ms FROM device_key WHERE keyid = %s",
                    (old_keyid,),
                )
                old = await cur.fetchone()
                if old is None or old[0] != device_id:
                    return None
                cur = await conn.execute(
                    "SELECT device_id, status FROM device_key WHERE keyid = %s", (new_keyid,)
                )
                new = await cur.fetchone()
                if new is not None:  # a retry of a rotation that already happened
                    if new[0] != device_id or new[1] == KeyStatus.REVOKED or old[2] is None:
                        return None
                    return RotateResult(new_keyid, old_keyid, int(old[2]))
                if old[1] != KeyStatus.ACTIVE:
                    return None
                not_after = now_ms + overlap_ms
                await conn.execute(
                    "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                    " VALUES (%s, %s, %s, 'active', %s)",
                    (new_keyid, device_id, new_public_key, now_ms),
                )
                await conn.execute(
                    "UPDATE device_key SET status = 'retiring', not_after_ms = %s WHERE keyid = %s",
                    (not_after, old_keyid),
                )
                return RotateResult(new_keyid, old_keyid, not_after)

    async def list_devices(self) -> list[DeviceState]:
        rows = await self._fetchall(queries.SELECT_DEVICES)
        return [device_state(r) for r in rows]

    async def get_device(self, device_id: str) -> DeviceState | None:
        row = await self._fetchone(queries.fmt(queries.SELECT_DEVICE, _P), (device_id,))
        if row is None:
            return None
        keys = await self._fetchall(queries.fmt(queries.SELECT_DEVICE_KEYS, _P), (device_id,))
        events = await self._fetchall(
            "SELECT kind, seq, expected_seq, reason, at_ms FROM chain_event"
            " WHERE device_id = %s ORDER BY id DESC LIMIT 50",
            (device_id,),
        )
        return device_state(
            row,
            keys=tuple(key_record(k) for k in keys),
            chain_events=tuple(ChainEvent(*e) for e in events),
        )

    async def set_device_status(self, device_id: str, status: DeviceStatus) -> bool:
        n = await self._rowcount(
            "UPDATE device SET status = %s WHERE id = %s AND status != 'pending'",
            (str(status), device_id),
        )
        return n == 1

    async def revoke_key(self, keyid: str, now_ms: int) -> bool:
        n = await self._rowcount(
            "UPDATE device_key SET status = 'revoked', revoked_ms = %s"
            " WHERE keyid = %s AND status != 'revoked'",
            (now_ms, keyid),
        )
        return n == 1

    async def revoke_device_keys(self, device_id: str, now_ms: int) -> int:
        return await self._rowcount(
            "UPDATE device_key SET status = 'revoked', revoked_ms = %s"
            " WHERE device_id = %s AND status != 'revoked'",
            (now_ms, device_id),
        )

    # -- ingest -----------------------------------------------------------------------------

    async def ingest(self, meta: BatchMeta, batch: Batch) -> IngestResult:
        if batch.reading_count() <= self.small_batch_max:
            return await self._ingest_call(meta, batch)
        new_ids: dict[tuple[str, SeriesKey], int] = {}
        async with self._pool.connection() as conn:
            with _translate():
                try:
                    result = await self._ingest_tx(conn, meta, batch, new_ids)
                except BaseException:
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        with contextlib.suppress(psycopg.Error):
                            await conn.execute("ROLLBACK")
                    raise
        if len(self._series_ids) > _SERIES_CACHE_MAX:
            self._series_ids.clear()
        self._series_ids.update(new_ids)  # only after the commit: a rolled-back id is no id
        return result

    async def _ingest_call(self, meta: BatchMeta, batch: Batch) -> IngestResult:
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
        return IngestResult(Outcome(outcome), meta.seq, int(expected_seq), reason)

    async def _ingest_tx(
        self,
        conn: AConn,
        meta: BatchMeta,
        batch: Batch,
        new_ids: dict[tuple[str, SeriesKey], int],
    ) -> IngestResult:
        """One transaction in as few round trips as the decisions allow: BEGIN with the row
        lock, then (for an append) every write with the COMMIT, pipelined."""
        cur = conn.cursor()
        async with conn.pipeline():
            await cur.execute("BEGIN")
            await cur.execute(
                "SELECT head_seq, head_digest FROM device WHERE id = %s FOR UPDATE",
                (meta.device_id,),
            )
        head = await cur.fetchone()
        if head is None:
            raise IntegrityError(f"device {meta.device_id!r} is not registered")
        head_seq, head_digest = int(head[0]), bytes(head[1])
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
                    n_readings,
                    len(batch.events),
                ),
            )
            if batch.events:
                await cur.executemany(
                    queries.fmt(queries.INSERT_EVENT, _P),
                    [
                        (meta.device_id, meta.seq, e.kind, e.ts_ms, e.quality, _json(e.attrs))
                        for e in batch.events
                    ],
                )
            await cur.execute(
                queries.fmt(queries.UPDATE_HEAD, _P),
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
        return IngestResult(Outcome.STORED, meta.seq, meta.seq + 1)

    @staticmethod
    async def _series_id(cur: psycopg.AsyncCursor[Any], values: tuple[str, ...]) -> int:
        await cur.execute(
            "INSERT INTO series (device_id, metric, unit, site, area, process, medium)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            values,
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute(queries.fmt(queries.SELECT_SERIES_ID, _P), values)
            row = await cur.fetchone()
        if row is None:  # pragma: no cover - the insert or the select finds it
            raise IntegrityError("series row vanished")
        return int(row[0])

    @staticmethod
    async def _chain_event(
        cur: psycopg.AsyncCursor[Any], meta: BatchMeta, result: IngestResult
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
            await cur.execute(queries.fmt(bump, _P), (meta.device_id,))

    async def bulk_insert_readings(self, rows: Sequence[tuple[int, int, float, int]]) -> None:
        async with self._pool.connection() as conn:
            with _translate():
                async with conn.transaction(), conn.cursor() as cur:
                    sql = "COPY reading (series_id, ts_ms, value, quality) FROM STDIN"
                    async with cur.copy(sql) as cp:
                        await cp.write(postgres_sql.copy_text(iter(rows)))

    # -- queries ----------------------------------------------------------------------------

    async def list_series(self, flt: SeriesFilter) -> list[SeriesInfo]:
        sql, params = queries.list_series(flt, _P)
        return [series_info(r) for r in await self._fetchall(sql, params)]

    async def get_series(self, series_id: int) -> SeriesInfo | None:
        row = await self._fetchone(queries.fmt(queries.SELECT_SERIES, _P), (series_id,))
        return None if row is None else series_info(row)

    async def readings(self, series_id: int, from_ms: int, to_ms: int, limit: int) -> list[Point]:
        rows = await self._fetchall(
            queries.fmt(queries.READINGS, _P), (series_id, from_ms, to_ms, limit)
        )
        return [Point(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        sql = queries.buckets(agg, _P, last_expr="(array_agg(value ORDER BY ts_ms DESC))[1]")
        rows = await self._fetchall(sql, (bucket_ms, bucket_ms, series_id, from_ms, to_ms))
        return [BucketPoint(int(r[0]), float(r[1]), int(r[2])) for r in rows]

    async def latest(self, flt: SeriesFilter) -> list[LatestValue]:
        sql, params = queries.latest(flt, _P, backend=self.kind)
        rows = await self._fetchall(sql, params)
        return [LatestValue(series_info(r[:8]), int(r[8]), float(r[9]), int(r[10])) for r in rows]

    async def events(
        self, device_id: str | None, kind: str | None, from_ms: int, to_ms: int, limit: int
    ) -> list[EventRecord]:
        sql, extra = queries.events(device_id, kind, _P)
        rows = await self._fetchall(sql, [from_ms, to_ms, *extra, limit])
        return [event_record(r[:5], r[5]) for r in rows]


def _json(attrs: tuple[tuple[str, Any], ...]) -> Jsonb:
    return Jsonb(dict(attrs))
