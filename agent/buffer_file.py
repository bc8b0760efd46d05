"""The buffer's file: its schema, the one-writer lock, and a damaged file moved aside with its
loss counted (`agent.buffer` invariant 5). Opening it is `agent.buffer.open_buffer`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from agent.errors import StoreError
from agent.journal import (
    JOURNAL_SUFFIX,
    readings_after,
)

SCHEMA_VERSION = 2  # 2: event and mcu_position tables, outbox.events
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, metric TEXT NOT NULL, unit TEXT NOT NULL, site TEXT NOT NULL,
    area TEXT NOT NULL, process TEXT NOT NULL, medium TEXT NOT NULL,
    last_ts_ms INTEGER, last_value REAL);
-- A plain rowid (max + 1): a new reading always gets an id above every reading present, which is
-- all "lower id = older" needs. (AUTOINCREMENT would cost one more page write per commit.)
-- value may be NULL: SQLite stores NaN as NULL, and one NaN must not fail a whole group commit;
-- the batcher counts it as rejected_invalid instead.
CREATE TABLE IF NOT EXISTS reading (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL, cfg INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, digest BLOB NOT NULL, body BLOB NOT NULL,
    readings INTEGER NOT NULL, oldest_ts_ms INTEGER, cut_ms INTEGER NOT NULL,
    events INTEGER NOT NULL DEFAULT 0, coding INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS epoch (
    id INTEGER PRIMARY KEY, kernel_boot_id TEXT NOT NULL, base_ms INTEGER NOT NULL,
    base_mono_ms INTEGER NOT NULL, delta_ms INTEGER);
-- attrs: MessagePack [[name, value], ...] (agent.batcher.encode_attrs)
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    quality INTEGER NOT NULL, attrs BLOB NOT NULL, cfg INTEGER NOT NULL DEFAULT 0);
-- uid is the MCU's u64, stored as the signed 64-bit integer with the same bits
CREATE TABLE IF NOT EXISTS mcu_position (
    uid INTEGER PRIMARY KEY, boot INTEGER NOT NULL, seq INTEGER NOT NULL);
-- Added without a version bump: an older agent opening the file ignores the table.
CREATE TABLE IF NOT EXISTS source_state (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
-- Added without a version bump (invariant 7): an older agent ignores the table, and its inserts
-- into reading and event leave cfg at 0, "version unknown", which is what they are.
CREATE TABLE IF NOT EXISTS config_span (id INTEGER PRIMARY KEY, version TEXT NOT NULL);
"""
# Fresh files get the column in CREATE TABLE; older files get it here (the DEFAULT makes both
# cost nothing for span 0). Column names from this module only.
CFG_COLUMNS = ("reading", "event")
# 1 KiB pages for a new file: a commit rewrites whole pages into the WAL (and the checkpoint
# writes them again), so small pages are fewer bytes on the card. An older file keeps its size.
PAGE_SIZE = 1024
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


@dataclass(slots=True)
class Damage:
    moved_to: str
    readings_lost: int
    reason: str


def lock_file(p: Path) -> int:
    """One writer: an exclusive flock on `<buffer>.lock`, released by the kernel if we die."""
    try:
        fd = os.open(f"{p}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"{p}.lock: cannot open: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"{p} is in use by another edge-agent process") from exc
    return fd


def move_aside(p: Path, reason: str) -> Damage:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = p.with_name(f"{p.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = p.with_name(f"{p.name}.damaged-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm", JOURNAL_SUFFIX):
        src = Path(f"{p}{suffix}")
        if src.exists():
            try:
                src.rename(f"{target}{suffix}")
            except OSError as exc:
                raise StoreError(
                    f"{src}: damaged, and cannot be moved aside: {exc.strerror}"
                ) from exc
    lost = count_lost(target)
    with contextlib.suppress(StoreError):  # its records count too (twice, if merged: see below)
        lost += readings_after(Path(f"{target}{JOURNAL_SUFFIX}"), 0)
    return Damage(str(target), lost, reason)


def count_lost(target: Path) -> int:
    """Best effort: the readings the damaged file held. Tried in order: count the tables; the
    running totals in `meta` (committed - acknowledged - evicted - rejected, exact as of the
    last commit); the span of reading ids ever assigned (an upper bound: over-reporting a loss
    beats hiding one). 0 when nothing can be read, which the log line then makes visible."""
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    # total_refused: rejected at the door, never committed, yet inside total_rejected_invalid
    meta_sql = (
        "SELECT coalesce(sum(CASE WHEN key IN ('total_committed', 'total_refused') THEN value "
        "ELSE -value END), 0) "
        "FROM meta WHERE key IN ('total_committed', 'total_acked_readings', "
        "'total_evicted', 'total_rejected_invalid', 'total_refused')"
    )
    try:
        for sql in (
            "SELECT (SELECT count(*) FROM reading) + (SELECT count(*) FROM event) + "
            "(SELECT coalesce(sum(readings) + sum(events), 0) FROM outbox)",
            "SELECT (SELECT count(*) FROM reading) + "
            "(SELECT coalesce(sum(readings), 0) FROM outbox)",  # a schema 1 file
            meta_sql,
            "SELECT max(id) - min(id) + 1 FROM reading",
        ):
            try:
                row = conn.execute(sql).fetchone()
            except sqlite3.Error:
                continue
            if row is not None and row[0] is not None:
                return max(0, int(row[0]))
        return 0
    finally:
        conn.close()
