"""Turning buffered rows into a batch body. Pure: rows and state in, body bytes out.

A buffered row is `(id, series_id, ts_ms, value, quality)` where `quality` holds the wire code in
its low byte and, for readings taken on an untrusted clock, the clock epoch above it (see
`agent.clock`). A buffered event is `(id, kind, ts_ms, quality, attrs)`, its quality the same way
and its attributes MessagePack (`encode_attrs`). Building a batch:
- applies the epoch's correction if one is known (timestamp shifted, TIME_UNTRUSTED cleared),
  else keeps the flag; the epoch number never reaches the wire; events alike;
- sets aside rows the contract forbids (a series key with an empty, overlong or unprintable
  name, unit or tag; a non-finite value; a timestamp outside 2000..2100; an unknown quality
  code) and events it forbids, by the contract's own rules (`wire.models.key_problem`,
  `reading_problem`, `event_problem`): they are counted as `rejected_invalid`, by reason in
  `Built.reasons`, never sent, never silently lost. So a buffer written before the ingest checked
  these rules (or by a bug) cannot stop the pipeline: only the rows at fault stay behind;
- keeps each series' readings in row order (oldest first within a series for a backlog batch),
  and events in the order they were added.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from agent.clock import EPOCH_SHIFT, WIRE_QUALITY_MASK
from wire.codec import encode_batch
from wire.models import (
    TIME_UNTRUSTED,
    AttrValue,
    Batch,
    ClockReport,
    Counters,
    Event,
    Problem,
    SeriesData,
    SeriesKey,
    event_problem,
    key_problem,
    reading_problem,
)

# id, series_id, ts_ms, value (None: SQLite's NaN), quality (+ epoch bits)
Row = tuple[int, int, int, float | None, int]
# id, kind, ts_ms, quality (+ epoch bits), attrs (encode_attrs)
EventRow = tuple[int, str, int, int, bytes]


@dataclass(frozen=True, slots=True)
class Built:
    body: bytes
    readings: int
    rejected: int
    oldest_ts_ms: int | None
    events: int = 0
    events_rejected: int = 0
    reasons: Mapping[str, int] = field(default_factory=dict)  # what was set aside, by reason


def encode_attrs(attrs: Sequence[tuple[str, AttrValue]]) -> bytes:
    """An event's attributes as stored in the buffer: MessagePack keeps str/int/float/bool apart."""
    return msgspec.msgpack.encode([[name, value] for name, value in attrs])


def _decode_attrs(data: bytes) -> tuple[tuple[str, AttrValue], ...]:
    pairs = msgspec.msgpack.decode(data, type=list[tuple[str, str | int | float | bool]])
    return tuple((name, value) for name, value in pairs)


def _true_time(ts: int, quality: int, deltas: Mapping[int, int]) -> tuple[int, int]:
    """The wire timestamp and code of a stamp that may carry an untrusted epoch."""
    if quality > WIRE_QUALITY_MASK:
        delta = deltas.get(quality >> EPOCH_SHIFT)
        if delta is None:
            return ts, quality & WIRE_QUALITY_MASK
        return ts + delta, quality & WIRE_QUALITY_MASK & ~TIME_UNTRUSTED
    return ts, quality


def _event(row: EventRow, deltas: Mapping[int, int]) -> Event | str:
    """The event a buffered row holds, or the reason the contract forbids it."""
    _id, kind, ts, quality, attrs = row
    ts, quality = _true_time(ts, quality, deltas)
    try:
        event = Event(kind, ts, _decode_attrs(attrs), quality)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "unreadable"
    problem = event_problem(event)
    return event if problem is None else str(problem.reason)


def build_body(
    rows: Sequence[Row],
    *,
    events: Sequence[EventRow] = (),
    series: Mapping[int, SeriesKey],
    deltas: Mapping[int, int],
    device_id: str,
    seq: int,
    prev: bytes,
    boot_id: str,
    clock: ClockReport,
    counters: Counters,
    config_version: str = "",
) -> Built:
    """Encode `rows` and `events` as batch `seq`. Rejected rows and events are left out, counted
    in the result and added to this batch's `rejected_invalid`, so the receiver hears of them
    with this batch."""
    # by key, not id: two ids with one key (never written so) would still make one series
    columns: dict[SeriesKey, SeriesData] = {}
    key_problems: dict[int, Problem | None] = {}
    reasons: Counter[str] = Counter()
    oldest: int | None = None
    for _id, sid, ts, value, quality in rows:
        ts, quality = _true_time(ts, quality, deltas)
        key = series.get(sid)
        if key is None:
            reasons["unknown_series"] += 1
            continue
        if sid not in key_problems:
            key_problems[sid] = key_problem(key)
        if value is None:  # SQLite's NaN
            value = math.nan
        problem = key_problems[sid] or reading_problem(ts, value, quality)
        if problem is not None:
            reasons[str(problem.reason)] += 1
            continue
        col = columns.get(key)
        if col is None:
            col = columns[key] = SeriesData(key)
        col.ts_ms.append(ts)
        col.values.append(value)
        col.quality.append(quality)
        if oldest is None or ts < oldest:
            oldest = ts
    rejected = sum(reasons.values())
    kept: list[Event] = []
    for outcome in (_event(row, deltas) for row in events):
        if isinstance(outcome, str):
            reasons[outcome] += 1
        else:
            kept.append(outcome)
    events_rejected = len(events) - len(kept)
    for e in kept:
        if oldest is None or e.ts_ms < oldest:
            oldest = e.ts_ms
    batch = Batch(
        device_id=device_id,
        seq=seq,
        prev=prev,
        boot_id=boot_id,
        series=list(columns.values()),
        events=kept,
        counters=Counters(
            counters.dropped_buffer_full,
            counters.dropped_damaged,
            counters.rejected_invalid + rejected + events_rejected,
        ),
        clock=clock,
        config_version=config_version,
    )
    return Built(
        encode_batch(batch),
        len(rows) - rejected,
        rejected,
        oldest,
        len(kept),
        events_rejected,
        dict(reasons),
    )
