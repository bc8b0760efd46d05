"""Hourly and daily roll-ups of the readings: how they are kept, and how bucketed reads use them.

The tables (`reading_hourly`, `reading_daily`; PostgreSQL migration 0008, SQLite 0006) hold per
series and UTC hour / day: the count, sum, min and max of the readings that are not BAD
(`(quality & 3) <> 2`, the filter of the bucketed reads), and the first and last reading
(timestamp and value). Buckets are epoch-aligned: `(ts_ms / size) * size`, as in the raw query.

Invariant: a roll-up row equals the aggregate of the raw readings of its bucket that were ever
stored, whatever order they arrived in. Every insert merges the new readings' aggregate into the
rows (`Partial.merge`, and the same rule in SQL): counts and sums add, min/max widen, the first
reading is the one with the smallest timestamp (a tie keeps what is stored: a tie is one reading
sent twice), the last the one with the largest. PostgreSQL does it in a statement trigger on
`reading`; SQLite in the inserting transaction, from Python (`sqlite_merge`), because SQLite has
no statement triggers and a row trigger would cost two upserts per reading. Retention deletes
raw readings only: the roll-ups are the long-range history.

Reads (`RollupReads.buckets`): a bucket size that is a whole number of hours (or days) is served
from the roll-ups for the whole hours (days) of the range and from raw readings for the ragged
ends (less than an hour each), merged per bucket, so a year of hourly buckets reads ~8,760 roll-up
rows per series instead of 31 M raw ones. Other sizes read raw readings as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.storage import queries
from cloud.storage.reads import Agg, BucketPoint

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LEVELS = (("reading_hourly", HOUR_MS), ("reading_daily", DAY_MS))
_BAD = 2  # wire.models Quality.BAD in the low two bits


@dataclass(slots=True)
class Partial:
    """The aggregate of some readings of one bucket."""

    n: int
    total: float
    lo: float
    hi: float
    first_ts_ms: int
    first_value: float
    last_ts_ms: int
    last_value: float

    @classmethod
    def of(cls, ts_ms: int, value: float) -> Partial:
        return cls(1, value, value, value, ts_ms, value, ts_ms, value)

    def merge(self, other: Partial) -> None:
        """Add `other` (later readings) to this aggregate; see the module's invariant."""
        self.n += other.n
        self.total += other.total
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)
        if other.first_ts_ms < self.first_ts_ms:
            self.first_ts_ms, self.first_value = other.first_ts_ms, other.first_value
        if other.last_ts_ms > self.last_ts_ms:
            self.last_ts_ms, self.last_value = other.last_ts_ms, other.last_value

    def value(self, agg: Agg) -> float:
        if agg is Agg.AVG:
            return self.total / self.n
        if agg is Agg.MIN:
            return self.lo
        if agg is Agg.MAX:
            return self.hi
        if agg is Agg.SUM:
            return self.total
        if agg is Agg.COUNT:
            return float(self.n)
        return self.last_value


def aggregate(
    rows: Iterable[tuple[int, int, float, int]], bucket_ms: int
) -> dict[tuple[int, int], Partial]:
    """(series_id, ts_ms, value, quality) rows -> {(series_id, bucket): aggregate}, BAD left out."""
    out: dict[tuple[int, int], Partial] = {}
    # The hot loop of a large batch on SQLite: readings come series by series in time order, so
    # the bucket rarely changes between rows; update the current aggregate in place.
    cur: Partial | None = None
    cur_sid = cur_lo = cur_hi = 0
    for sid, ts, value, quality in rows:
        if quality & 3 == _BAD:
            continue
        if cur is None or sid != cur_sid or not cur_lo <= ts < cur_hi:
            cur_sid, cur_lo = sid, _bucket(ts, bucket_ms)
            cur_hi = cur_lo + bucket_ms if ts >= 0 else cur_lo + 1  # negative: no fast path
            cur = out.get((sid, cur_lo))
            if cur is None:
                cur = out[(sid, cur_lo)] = Partial(1, value, value, value, ts, value, ts, value)
                continue
        cur.n += 1
        cur.total += value
        if value < cur.lo:
            cur.lo = value
        if value > cur.hi:
            cur.hi = value
        if ts < cur.first_ts_ms:
            cur.first_ts_ms, cur.first_value = ts, value
        if ts > cur.last_ts_ms:
            cur.last_ts_ms, cur.last_value = ts, value
    return out


def _partial(r: Sequence[Any]) -> Partial:
    """A roll-up row's columns n .. last_value as an aggregate."""
    return Partial(
        int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4]), float(r[5]), int(r[6]),
        float(r[7]),
    )  # fmt: skip


def _bucket(ts_ms: int, size: int) -> int:
    # SQL's integer division truncates toward zero; Python's floors: the same for ts >= 0, and
    # the raw query's bucket for the rare negative timestamp too.
    q = abs(ts_ms) // size
    return (q if ts_ms >= 0 else -q) * size


def sqlite_upsert(table: str) -> str:
    return (
        f"INSERT INTO {table} AS r (series_id, bucket_ms, n, total, lo, hi, first_ts_ms,"  # noqa: S608
        " first_value, last_ts_ms, last_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (series_id, bucket_ms) DO UPDATE SET n = r.n + excluded.n,"
        " total = r.total + excluded.total, lo = min(r.lo, excluded.lo),"
        " hi = max(r.hi, excluded.hi),"
        " first_value = CASE WHEN excluded.first_ts_ms < r.first_ts_ms"
        "   THEN excluded.first_value ELSE r.first_value END,"
        " first_ts_ms = min(r.first_ts_ms, excluded.first_ts_ms),"
        " last_value = CASE WHEN excluded.last_ts_ms > r.last_ts_ms"
        "   THEN excluded.last_value ELSE r.last_value END,"
        " last_ts_ms = max(r.last_ts_ms, excluded.last_ts_ms)"
    )


def sqlite_merge(
    conn: Any, rows: Sequence[tuple[int, int, float, int]]
) -> None:  # conn: sqlite3.Connection, in the caller's transaction
    """Merge `rows` (just inserted into `reading`) into both roll-up tables (SQLite)."""
    for table, size in LEVELS:
        conn.executemany(
            sqlite_upsert(table),
            [
                (sid, b, p.n, p.total, p.lo, p.hi, p.first_ts_ms, p.first_value, p.last_ts_ms,
                 p.last_value)
                for (sid, b), p in aggregate(rows, size).items()
            ],
        )  # fmt: skip


def segments(from_ms: int, to_ms: int, bucket_ms: int) -> list[tuple[str | None, int, int]]:
    """[from_ms, to_ms) cut into (roll-up table or None for raw readings, lo, hi) pieces: the
    coarsest level whose size divides `bucket_ms` for its whole units, finer ones for the ends."""
    usable = [(t, s) for t, s in reversed(LEVELS) if bucket_ms % s == 0]
    out: list[tuple[str | None, int, int]] = []

    def cut(lo: int, hi: int, levels: list[tuple[str, int]]) -> None:
        if lo >= hi:
            return
        if not levels:
            out.append((None, lo, hi))
            return
        (table, size), rest = levels[0], levels[1:]
        a, b = -(-lo // size) * size, (hi // size) * size
        if a >= b:
            cut(lo, hi, rest)
            return
        cut(lo, a, rest)
        out.append((table, a, b))
        cut(b, hi, rest)

    cut(from_ms, to_ms, usable)
    return out


class RollupReads:
    """`ReadStore.buckets` from roll-ups, for a backend's read part, which supplies `kind`,
    `_fetch_rows` and `_raw_buckets` (the raw query, for sizes that are not whole hours)."""

    kind: str

    async def _fetch_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _raw_buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        raise NotImplementedError

    async def buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        """One aggregate per non-empty bucket of `bucket_ms`, aligned to the epoch."""
        if bucket_ms % HOUR_MS != 0:
            return await self._raw_buckets(series_id, from_ms, to_ms, bucket_ms, agg)
        ph = "%s" if self.kind == "postgres" else "?"
        merged: dict[int, Partial] = {}
        for table, lo, hi in segments(from_ms, to_ms, bucket_ms):
            if table is None:
                rows = await self._fetch_rows(
                    queries.fmt(queries.READINGS_ALL, ph), (series_id, lo, hi)
                )
                parts = aggregate(((series_id, t, v, q) for t, v, q in rows), bucket_ms)
                pieces = [(b, p) for (_, b), p in parts.items()]
            else:
                rows = await self._fetch_rows(
                    f"SELECT bucket_ms, n, total, lo, hi, first_ts_ms, first_value,"  # noqa: S608
                    f" last_ts_ms, last_value FROM {table} WHERE series_id = {ph}"
                    f" AND bucket_ms >= {ph} AND bucket_ms < {ph} ORDER BY bucket_ms",
                    (series_id, lo, hi),
                )
                pieces = [(_bucket(int(r[0]), bucket_ms), _partial(r[1:])) for r in rows]
            for b, p in pieces:
                found = merged.get(b)
                if found is None:
                    merged[b] = p
                else:
                    found.merge(p)
        return [BucketPoint(b, merged[b].value(agg), merged[b].n) for b in sorted(merged)]
