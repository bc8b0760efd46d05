"""Filling a SQLite store fast, for benchmarks and large fixtures: no chain, no receiver.

`bulk_load` writes devices, series, readings and events straight into an already migrated file
in ONE transaction with `synchronous = OFF` and a 2 GB page cache (the reading index fits while
it is built), then runs `ANALYZE`. A crash while it runs can leave a broken file: never point it
at a database a receiver serves. Devices are written active, at the genesis head, with no keys.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloud.errors import StoreError
from cloud.storage import rollups
from cloud.storage.reads import EventRecord, SeriesInfo
from cloud.storage.sqlite_db import translate
from wire.models import GENESIS

ReadingRow = tuple[int, int, float, int]  # (series_id, ts_ms, value, quality)
# (series_id, bucket_ms, *cloud.storage.rollups.COLUMNS): n, total, lo, hi, first_ts_ms,
# first_value, last_ts_ms, last_value, u_n, u_first_ts_ms, u_first_value, u_last_ts_ms,
# u_last_value, u_rising, x_n
RollupRow = tuple[
    int,
    int,
    int,
    float,
    float,
    float,
    int,
    float,
    int,
    float,
    int,
    int,
    float,
    int,
    float,
    bool,
    int,
]


@dataclass(frozen=True, slots=True)
class BulkDevice:
    device_id: str
    created_ms: int
    last_seen_ms: int | None = None
    clock_state: int | None = None
    clock_offset_ms: int | None = None


def bulk_load(
    path: str,
    *,
    devices: Sequence[BulkDevice],
    series: Sequence[SeriesInfo],
    readings: Iterable[Sequence[ReadingRow]],
    events: Sequence[EventRecord] = (),
    rollups: Iterable[tuple[str, Sequence[RollupRow]]] = (),
) -> int:
    """Write everything in one transaction; `readings` comes in chunks (one `executemany`
    each), so the caller need not hold every row at once. The number of readings written.
    `rollups`: (table, rows) chunks of history older than the readings, merged into
    `reading_hourly` / `reading_daily` as if their readings had been stored and expired."""
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    try:
        return _load(conn, devices, series, readings, events, rollups)
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    finally:
        conn.close()


def _load(
    conn: sqlite3.Connection,
    devices: Sequence[BulkDevice],
    series: Sequence[SeriesInfo],
    readings: Iterable[Sequence[ReadingRow]],
    events: Sequence[EventRecord],
    rollup_chunks: Iterable[tuple[str, Sequence[RollupRow]]] = (),
) -> int:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'reading'").fetchone() is None:
        raise StoreError("bulk_load needs a migrated store")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -2000000")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO device (id, status, head_digest, created_ms, last_seen_ms, clock_state,"
        " clock_offset_ms) VALUES (?, 'active', ?, ?, ?, ?, ?)",
        [
            (d.device_id, GENESIS, d.created_ms, d.last_seen_ms, d.clock_state, d.clock_offset_ms)
            for d in devices
        ],
    )
    conn.executemany(
        "INSERT INTO series (id, device_id, metric, unit, site, area, process, medium)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (s.series_id, s.device_id, s.metric, s.unit, s.site, s.area, s.process, s.medium)
            for s in series
        ],
    )
    total = 0
    for chunk in readings:
        conn.executemany(
            "INSERT INTO reading (series_id, ts_ms, value, quality) VALUES (?, ?, ?, ?)", chunk
        )
        rollups.sqlite_merge(conn, chunk)
        total += len(chunk)
    for table, rows in rollup_chunks:
        if table not in (name for name, _ in rollups.LEVELS):
            raise ValueError(f"not a roll-up table: {table!r}")
        conn.executemany(rollups.sqlite_upsert(table), rows)
    conn.executemany(
        "INSERT INTO event (device_id, seq, kind, ts_ms, quality, attrs) VALUES (?, ?, ?, ?, ?, ?)",
        [(e.device_id, e.seq, e.kind, e.ts_ms, e.quality, json.dumps(e.attrs)) for e in events],
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    return total
