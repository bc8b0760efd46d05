"""Turning buffered rows into a batch body. Pure: rows and state in, body bytes out.

A buffered row is `(id, series_id, ts_ms, value, quality)` where `quality` holds the wire code in
its low byte and, for readings taken on an untrusted clock, the clock epoch above it (see
`agent.clock`). Building a batch:
- applies the epoch's correction if one is known (timestamp shifted, TIME_UNTRUSTED cleared),
  else keeps the flag; the epoch number never reaches the wire;
- sets aside rows the contract forbids (non-finite value, timestamp outside 2000..2100, unknown
  quality code): they are counted as `rejected_invalid`, never sent, never silently lost;
- keeps each series' readings in row order (oldest first within a series for a backlog batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.clock import EPOCH_SHIFT, WIRE_QUALITY_MASK
from wire.codec import encode_batch
from wire.models import (
    MAX_TS_MS,
    MIN_TS_MS,
    TIME_UNTRUSTED,
    VALID_QUALITY_CODES,
    Batch,
    Clock,
    Counters,
    SeriesData,
    SeriesKey,
)

# id, series_id, ts_ms, value (None: SQLite's NaN), quality (+ epoch bits)
Row = tuple[int, int, int, float | None, int]


@dataclass(frozen=True, slots=True)
class Built:
    body: bytes
    readings: int
    rejected: int
    oldest_ts_ms: int | None


def build_body(
    rows: Sequence[Row],
    *,
    series: Mapping[int, SeriesKey],
    deltas: Mapping[int, int],
    device_id: str,
    seq: int,
    prev: bytes,
    boot_id: str,
    clock: Clock,
    counters: Counters,
) -> Built:
    """Encode `rows` as batch `seq`. Rejected rows are left out, counted in the result and
    added to this batch's `rejected_invalid`, so the receiver hears of them with this batch."""
    columns: dict[int, SeriesData] = {}
    rejected = 0
    oldest: int | None = None
    for _id, sid, ts, value, quality in rows:
        if quality > WIRE_QUALITY_MASK:
            delta = deltas.get(quality >> EPOCH_SHIFT)
            if delta is None:
                quality &= WIRE_QUALITY_MASK
            else:
                ts += delta
                quality &= WIRE_QUALITY_MASK & ~TIME_UNTRUSTED
        key = series.get(sid)
        if (
            key is None
            or not MIN_TS_MS <= ts <= MAX_TS_MS
            or value is None
            or not math.isfinite(value)
            or quality not in VALID_QUALITY_CODES
        ):
            rejected += 1
            continue
        col = columns.get(sid)
        if col is None:
            col = columns[sid] = SeriesData(key)
        col.ts_ms.append(ts)
        col.values.append(value)
        col.quality.append(quality)
        if oldest is None or ts < oldest:
            oldest = ts
    batch = Batch(
        device_id=device_id,
        seq=seq,
        prev=prev,
        boot_id=boot_id,
        series=list(columns.values()),
        counters=Counters(
            counters.dropped_buffer_full,
            counters.dropped_damaged,
            counters.rejected_invalid + rejected,
        ),
        clock=clock,
    )
    return Built(encode_batch(batch), len(rows) - rejected, rejected, oldest)
