"""Hourly and daily roll-ups of the readings: how they are kept, and how bucketed reads use them.

The tables (`reading_hourly`, `reading_daily`; PostgreSQL migration 0008, SQLite 0006) hold per
series and UTC hour / day: the count, sum, min and max of the readings that are not BAD
(`(quality & 3) <> 2`, the filter of the bucketed reads), and the first and last reading
(timestamp and value). Buckets are epoch-aligned: `(ts_ms / size) * size`, as in the raw query.

For the counter figures (PostgreSQL 0009, SQLite 0007, `cloud.storage.windows`) they also hold,
over the *usable* readings (GOOD or UNCERTAIN with a trusted timestamp, a finite value: what
`cloud.apps.figures.clean_counter` uses): their count `u_n`, the first and last of them
(`u_first_*`, `u_last_*`), `u_rising` (timestamps strictly increasing and values never falling,
in timestamp order), and `x_n`, the readings that are not usable. A bucket that holds only BAD
readings has a row with `n = 0` (bucketed reads skip it) so that `x_n` counts them too. An empty
side uses identity values, so merging needs no special case: `lo = +inf`, `hi = -inf`, first
timestamps `EMPTY_FIRST_TS`, last ones `EMPTY_LAST_TS`, `u_first_value = +inf`,
`u_last_value = -inf`, `u_rising = true`.

Invariant: a roll-up row equals the aggregate of the raw readings of its bucket that were ever
stored, whatever order they arrived in. Every insert merges the new readings' aggregate into the
rows (`Partial.merge`, and the same rule in SQL): counts and sums add, min/max widen, the first
reading is the one with the smallest timestamp (a tie keeps what is stored: a tie is one reading
sent twice), the last the one with the largest; `u_rising` of two parts is true when both are
and one lies wholly before the other without a fall between them (interleaved or tied parts are
not rising: a conservative answer, which only sends the figures to the raw readings).
PostgreSQL does it in a statement trigger on `reading`; SQLite in the inserting transaction, from
Python (`sqlite_merge`), because SQLite has no statement triggers and a row trigger would cost
two upserts per reading. Retention deletes
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
EMPTY_FIRST_TS = 2**62  # the first timestamp of no readings: later than any
EMPTY_LAST_TS = -(2**62)
_INF = float("inf")


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
    u_n: int = 0
    u_first_ts_ms: int = EMPTY_FIRST_TS
    u_first_value: float = _INF
    u_last_ts_ms: int = EMPTY_LAST_TS
    u_last_value: float = -_INF
    u_rising: bool = True
    x_n: int = 0

    @classmethod
    def empty(cls) -> Partial:
        return cls(0, 0.0, _INF, -_INF, EMPTY_FIRST_TS, 0.0, EMPTY_LAST_TS, 0.0)

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
        both = self.u_rising and other.u_rising
        if self.u_last_ts_ms < other.u_first_ts_ms:
            self.u_rising = both and self.u_last_value <= other.u_first_value
        elif other.u_last_ts_ms < self.u_first_ts_ms:
            self.u_rising = both and other.u_last_value <= self.u_first_value
        else:
            self.u_rising = False
        self.u_n += other.u_n
        self.x_n += other.x_n
        if other.u_first_ts_ms < self.u_first_ts_ms:
            self.u_first_ts_ms, self.u_first_value = other.u_first_ts_ms, other.u_first_value
        if other.u_last_ts_ms > self.u_last_ts_ms:
            self.u_last_ts_ms, self.u_last_value = other.u_last_ts_ms, other.u_last_value

    def columns(self) -> tuple[int | float | bool, ...]:
        """The row's columns after (series_id, bucket_ms), in table order."""
        return (
            self.n, self.total, self.lo, self.hi, self.first_ts_ms, self.first_value,
            self.last_ts_ms, self.last_value, self.u_n, self.u_first_ts_ms, self.u_first_value,
            self.u_last_ts_ms, self.u_last_value, self.u_rising, self.x_n,
        )  # fmt: skip

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
    """(series_id, ts_ms, value, quality) rows -> {(series_id, bucket): aggregate}. A bucket of
    BAD readings only has an aggregate with n = 0 (its `x_n` counts them)."""
    out: dict[tuple[int, int], Partial] = {}
    # The hot loop of a large batch on SQLite: readings come series by series in time order, so
    # the bucket rarely changes between rows; update the current aggregate in place.
    cur = Partial.empty()
    cur_sid = cur_lo = cur_hi = 0
    started = False
    for sid, ts, value, quality in rows:
        if not started or sid != cur_sid or not cur_lo <= ts < cur_hi:
            started = True
            cur_sid, cur_lo = sid, _bucket(ts, bucket_ms)
            cur_hi = cur_lo + bucket_ms if ts >= 0 else cur_lo + 1  # negative: no fast path
            found = out.get((sid, cur_lo))
            if found is None:
                found = out[(sid, cur_lo)] = Partial.empty()
            cur = found
        if quality & 3 != _BAD:
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
        if 0 <= quality <= 1 and -_INF < value < _INF:  # usable (cloud.apps.figures)
            cur.u_n += 1
            if ts > cur.u_last_ts_ms:  # the common case: after the others
                if value < cur.u_last_value:
                    cur.u_rising = False
                cur.u_last_ts_ms, cur.u_last_value = ts, value
                if ts < cur.u_first_ts_ms:
                    cur.u_first_ts_ms, cur.u_first_value = ts, value
            elif ts < cur.u_first_ts_ms:
                if value > cur.u_first_value:
                    cur.u_rising = False
                cur.u_first_ts_ms, cur.u_first_value = ts, value
            else:  # between the others, or a tie: not known to rise
                cur.u_rising = False
        else:
            cur.x_n += 1
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


COLUMNS = (
    "n", "total", "lo", "hi", "first_ts_ms", "first_value", "last_ts_ms", "last_value", "u_n",
    "u_first_ts_ms", "u_first_value", "u_last_ts_ms", "u_last_value", "u_rising", "x_n",
)  # fmt: skip


def sqlite_upsert(table: str) -> str:
    """Merge one row (series_id, bucket_ms, `COLUMNS`...) into `table`: `Partial.merge` in SQL."""
    return (
        f"INSERT INTO {table} AS r (series_id, bucket_ms, {', '.join(COLUMNS)})"  # noqa: S608
        f" VALUES ({', '.join('?' * (len(COLUMNS) + 2))})"
        " ON CONFLICT (series_id, bucket_ms) DO UPDATE SET n = r.n + excluded.n,"
        " total = r.total + excluded.total, lo = min(r.lo, excluded.lo),"
        " hi = max(r.hi, excluded.hi),"
        " first_value = CASE WHEN excluded.first_ts_ms < r.first_ts_ms"
        "   THEN excluded.first_value ELSE r.first_value END,"
        " first_ts_ms = min(r.first_ts_ms, excluded.first_ts_ms),"
        " last_value = CASE WHEN excluded.last_ts_ms > r.last_ts_ms"
        "   THEN excluded.last_value ELSE r.last_value END,"
        " last_ts_ms = max(r.last_ts_ms, excluded.last_ts_ms),"
        " u_rising = CASE WHEN r.u_last_ts_ms < excluded.u_first_ts_ms"
        "   THEN r.u_rising AND excluded.u_rising AND r.u_last_value <= excluded.u_first_value"
        "   WHEN excluded.u_last_ts_ms < r.u_first_ts_ms"
        "   THEN r.u_rising AND excluded.u_rising AND excluded.u_last_value <= r.u_first_value"
        "   ELSE 0 END,"
        " u_n = r.u_n + excluded.u_n, x_n = r.x_n + excluded.x_n,"
        " u_first_value = CASE WHEN excluded.u_first_ts_ms < r.u_first_ts_ms"
        "   THEN excluded.u_first_value ELSE r.u_first_value END,"
        " u_first_ts_ms = min(r.u_first_ts_ms, excluded.u_first_ts_ms),"
        " u_last_value = CASE WHEN excluded.u_last_ts_ms > r.u_last_ts_ms"
        "   THEN excluded.u_last_value ELSE r.u_last_value END,"
        " u_last_ts_ms = max(r.u_last_ts_ms, excluded.u_last_ts_ms)"
    )


def sqlite_merge(
    conn: Any, rows: Sequence[tuple[int, int, float, int]]
) -> None:  # conn: sqlite3.Connection, in the caller's transaction
    """Merge `rows` (just inserted into `reading`) into both roll-up tables (SQLite)."""
    for table, size in LEVELS:
        conn.executemany(
            sqlite_upsert(table),
            [(sid, b, *p.columns()) for (sid, b), p in aggregate(rows, size).items()],
        )


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
                    f" AND bucket_ms >= {ph} AND bucket_ms < {ph} AND n > 0 ORDER BY bucket_ms",
                    (series_id, lo, hi),
                )
                pieces = [(_bucket(int(r[0]), bucket_ms), _partial(r[1:])) for r in rows]
            for b, p in pieces:
                found = merged.get(b)
                if found is None:
                    merged[b] = p
                else:
                    found.merge(p)
        return [
            BucketPoint(b, merged[b].value(agg), merged[b].n)
            for b in sorted(merged)
            if merged[b].n > 0  # BAD readings only: no bucket, as in the raw query
        ]
