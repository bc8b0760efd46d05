"""The SQLite store's plumbing: connections, their threads, transactions, error translation.

Threads: one writer thread owns the only writing connection, so writes never contend inside the
process; one reader thread serves key look-ups and queries from its own connection, which WAL lets
run beside the writer. Every call hops to its thread with `run_in_executor`; sqlite3 exceptions
are translated to `cloud.errors` there (`translate`) and never leave the SQLite modules.
`SqliteDb` is the base of the three parts of `cloud.storage.sqlite.SqliteStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cloud.errors import IntegrityError, StoreError, StoreUnavailableError

T = TypeVar("T")
Conn = sqlite3.Connection
PH = "?"  # the placeholder of `cloud.storage.queries`


def translate(exc: sqlite3.Error, path: str | None = None) -> StoreError:
    where = f"sqlite: {path}: " if path is not None else "sqlite: "
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(f"{where}{exc}")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return StoreUnavailableError(f"{where}{exc}")
    return StoreError(f"{where}{exc}")


class SqliteDb:
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

    def _connect(self) -> Conn:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            # sqlite3 names no file ("unable to open database file"): a wrong directory or
            # a permission is found here, so the line names the path.
            raise translate(exc, self.path) from exc
        return conn

    async def open(self) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._wconn = await self._run(self._writer, lambda: self._connect())
        self._rconn = await self._run(self._reader, lambda: self._connect())

    async def close(self) -> None:
        await self._before_close()
        for executor, conn in ((self._writer, self._wconn), (self._reader, self._rconn)):
            if executor is not None and conn is not None:
                with contextlib.suppress(StoreError):
                    await self._run(executor, conn.close)
            if executor is not None:
                executor.shutdown(wait=True)
        self._writer = self._reader = None
        self._wconn = self._rconn = None

    async def _before_close(self) -> None:
        """Hook for the parts: finish what is in flight while the connections are still open."""

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        def call() -> T:
            try:
                return fn()
            except sqlite3.Error as exc:
                raise translate(exc) from exc

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

    async def _fetch_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One read-only statement on the reader thread (`cloud.storage.windows.Fetch`)."""
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
