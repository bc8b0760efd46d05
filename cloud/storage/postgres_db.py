"""The PostgreSQL store's plumbing: a small connection pool, sessions, error translation.

Sessions run with `lock_timeout` and `statement_timeout`, so a stuck lock becomes a 503 the
gateway retries, not a request that hangs. psycopg exceptions are translated in `translate` and
never leave the PostgreSQL modules. `PostgresDb` is the base of the three parts of
`cloud.storage.postgres.PostgresStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from cloud.errors import IntegrityError, StoreError, StoreUnavailableError

AConn = psycopg.AsyncConnection[Any]
PH = "%s"  # the placeholder of `cloud.storage.queries`
_IDLE = TransactionStatus.IDLE


@contextlib.contextmanager
def translate() -> Iterator[None]:
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


class Pool:
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
            with translate():
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


class PostgresDb:
    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        connect_timeout_s: int = 5,
        lock_timeout_ms: int = 2_000,
        statement_timeout_ms: int = 30_000,
    ) -> None:
        settings = (
            f"SET lock_timeout = {int(lock_timeout_ms)};"
            f" SET statement_timeout = {int(statement_timeout_ms)}"
        )
        self.dsn = dsn
        self._pool = Pool(dsn, pool_size, connect_timeout_s=connect_timeout_s, settings=settings)

    async def open(self) -> None:
        await self.ping()

    async def ping(self) -> None:
        await self._fetchone("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with translate():
            return await self._pool.fetchone(sql, params)

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            with translate():
                cur = await conn.execute(sql, params)
                return await cur.fetchall()

    async def _fetch_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One read-only statement on a pooled connection (`cloud.storage.windows.Fetch`)."""
        return await self._fetchall(sql, params)

    async def _rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._pool.connection() as conn:
            with translate():
                cur = await conn.execute(sql, params)
                return cur.rowcount
