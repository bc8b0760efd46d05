"""The figures' windows: the raw rows `cloud.apps.figures` computes from, read in chunks.

Every query here is a range or a probe on the `reading (series_id, ts_ms)` index, so its cost
follows the rows of the window asked for, never the size of the table (docs/figures.md shows the
plans):
- `WINDOW`: the readings of a few series over [from - context, to + context), one index range
  scan per series (SQLite: `SEARCH reading USING INDEX reading_series_ts (series_id=? AND
  ts_ms>? AND ts_ms<?)`; PostgreSQL: an index scan with `series_id = ANY(...)`);
- `BEFORE` / `AFTER`: per series the newest usable reading before, or the oldest after, one
  index probe each, so a gap that began long before the window is reported with its real start.

Series are read in chunks of `CHUNK` so that one large request does not hold the SQLite reader
thread (which also serves the batch path's key look-ups) for long, and the caller computes each
chunk before the next is read. `RowBudgetError` stops a request that would read more than its
budget. Both backends' read parts serve `ReadStore.series_windows` from `WindowReads`.

`ReadStore.counter_windows` (`CounterWindowReads`) serves the same rows for counters from the
hourly roll-ups where the counter rules have nothing to do (`compressible`): `ROLLUP`, one range
scan on the `reading_hourly` primary key per chunk, plus raw readings only for the hours around a
drop. Its invariant: on a grid of whole UTC hours, `cloud.apps.figures` computes from its rows
the trace breaks, excursions, exclusions, gaps, statuses and covered times of the raw rows, and
the same values to float rounding (`tests/cloud/storage/test_counter_windows.py`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple

from cloud.errors import RowBudgetError
from cloud.storage import queries
from cloud.storage.reads import CounterWindow, Row

CHUNK = 25  # series per round trip
HOUR_MS = 3_600_000
_USABLE = "quality IN (0, 1)"  # GOOD or UNCERTAIN, with a trusted timestamp (wire.models)


def _sqlite_in(n: int) -> str:
    return ", ".join("?" * n)


def window_sql(kind: str, n: int) -> str:
    """Params: ids..., from, to (SQLite) / ids, from, to (PostgreSQL)."""
    if kind == "postgres":
        return (
            "SELECT series_id, ts_ms, value, quality FROM reading"
            " WHERE series_id = ANY(%s) AND ts_ms >= %s AND ts_ms < %s"
            " ORDER BY series_id, ts_ms"
        )
    return (
        "SELECT series_id, ts_ms, value, quality FROM reading"  # noqa: S608 - placeholders only
        f" WHERE series_id IN ({_sqlite_in(n)}) AND ts_ms >= ? AND ts_ms < ?"
        " ORDER BY series_id, ts_ms"
    )


def probe_sql(kind: str, n: int, *, before: bool) -> str:
    """Params: ts, ids... (SQLite) / ts, ids (PostgreSQL)."""
    cmp, order = ("<", "DESC") if before else (">=", "ASC")
    if kind == "postgres":
        return (
            "SELECT s.id, r.ts_ms, r.value, r.quality FROM series s CROSS JOIN LATERAL"  # noqa: S608
            f" (SELECT ts_ms, value, quality FROM reading WHERE series_id = s.id"
            f" AND ts_ms {cmp} %s AND {_USABLE} ORDER BY ts_ms {order} LIMIT 1) r"
            " WHERE s.id = ANY(%s)"
        )
    return (
        "SELECT r.series_id, r.ts_ms, r.value, r.quality FROM series s"  # noqa: S608
        " JOIN reading r ON r.rowid = (SELECT x.rowid FROM reading x"
        f" WHERE x.series_id = s.id AND x.ts_ms {cmp} ? AND x.{_USABLE}"
        f" ORDER BY x.ts_ms {order} LIMIT 1)"
        f" WHERE s.id IN ({_sqlite_in(n)})"
    )


def _params(kind: str, ids: Sequence[int], *around: int) -> list[Any]:
    return [list(ids), *around] if kind == "postgres" else [*ids, *around]


class WindowReads:
    """`ReadStore.series_windows` for a backend's read part, which supplies `kind` and
    `_fetch_rows` (one read-only statement, all its rows, driver errors translated)."""

    kind: str

    async def _fetch_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def series_windows(
        self,
        series_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        *,
        context_ms: int,
        budget_rows: int,
        probe_after: bool = True,
    ) -> AsyncIterator[list[tuple[int, list[Row]]]]:
        """Per chunk of series: (series id, readings) with the readings of
        [from_ms - context_ms, to_ms + context_ms) plus the nearest usable reading outside that
        range on each side (the `after` probe is skipped when `probe_after` is false, e.g. for a
        window that ends now). Readings of a series are in timestamp order; duplicates of the
        probes are possible and harmless (`cloud.apps.figures` keeps one reading per timestamp)."""
        kind = self.kind
        lo, hi = from_ms - context_ms, to_ms + context_ms
        read = 0
        for start in range(0, len(series_ids), CHUNK):
            ids = series_ids[start : start + CHUNK]
            out: dict[int, list[Row]] = {sid: [] for sid in ids}
            before = await self._fetch_rows(
                probe_sql(kind, len(ids), before=True), [lo, *_params(kind, ids)]
            )
            rows = await self._fetch_rows(window_sql(kind, len(ids)), _params(kind, ids, lo, hi))
            read += len(rows)
            if read > budget_rows:
                raise RowBudgetError(f"more than {budget_rows} readings to read")
            after: list[tuple[Any, ...]] = []
            if probe_after:
                after = await self._fetch_rows(
                    probe_sql(kind, len(ids), before=False), [hi, *_params(kind, ids)]
                )
            for group in (before, rows, after):
                for sid, ts, value, quality in group:  # ints and floats from both drivers
                    out[sid].append((ts, value, quality))
            yield list(out.items())


# -- counter windows from the hourly roll-ups ---------------------------------------------------


class HourSummary(NamedTuple):
    """A `reading_hourly` row as `ROLLUP` reads it (`cloud.storage.rollups` has the columns): a
    tuple, so a driver's row becomes one without a copy per field."""

    series_id: int
    bucket_ms: int
    hi: float  # the largest reading that is not BAD: a bound on the usable ones
    u_n: int
    u_first_ts_ms: int
    u_first_value: float
    u_last_ts_ms: int
    u_last_value: float
    u_rising: bool
    x_n: int


def compressible(
    hours: Sequence[HourSummary], before: float | None, after: float | None, margin_h: int
) -> set[int]:
    """The hours (bucket_ms) whose usable readings can stand as their first and last alone.

    An hour is *clean* when its usable readings rise and its first is not below any usable
    reading before it (the probe `before` included): the counter rules then keep every reading as
    its level, no drop, no excursion, no break. The rules look `excursion_ms` ahead of and behind
    a drop, so an hour is compressible when it is clean and no hour within `margin_h` hours of
    it (`ceil(excursion_ms / 1 h)`) is dirty; an `after` probe below the levels counts as dirty at
    the hour after the window. Then the readings the rules look at near any drop are all there,
    and inside a compressible hour every step lies in one hour, attributed whole, so first and
    last give the same consumption and covered time (to float rounding of the sum)."""
    dirty: list[int] = []
    clean: list[int] = []
    running = -math.inf if before is None else before
    end = 0
    for h in hours:
        end = h.bucket_ms + HOUR_MS
        if h.u_n == 0:
            continue
        if h.u_rising and h.u_first_value >= running:
            clean.append(h.bucket_ms)
        else:
            dirty.append(h.bucket_ms)
        top = h.u_last_value if h.u_rising else h.hi
        running = math.inf if top != top else max(running, top)  # NaN: no bound
    if after is not None and after < running:
        dirty.append(end)
    reach = margin_h * HOUR_MS
    out = set()
    for b in clean:
        i = bisect.bisect_left(dirty, b - reach)
        if i == len(dirty) or dirty[i] > b + reach:
            out.add(b)
    return out


def rollup_sql(kind: str, n: int) -> str:
    """`ROLLUP`: the hourly summaries of a chunk of series. Params as `window_sql`."""
    columns = (
        "SELECT series_id, bucket_ms, hi, u_n, u_first_ts_ms, u_first_value, u_last_ts_ms,"
        " u_last_value, u_rising, x_n FROM reading_hourly"
    )
    if kind == "postgres":
        where = " WHERE series_id = ANY(%s) AND bucket_ms >= %s AND bucket_ms < %s"
    else:
        where = f" WHERE series_id IN ({_sqlite_in(n)}) AND bucket_ms >= ? AND bucket_ms < ?"
    return columns + where + " ORDER BY series_id, bucket_ms"


class CounterWindowReads(WindowReads):
    """`ReadStore.counter_windows`: the rows of `series_windows`, with every compressible hour
    (`compressible`) replaced by its first and last usable reading from the hourly roll-ups, so
    a day of 10-second readings costs 24 roll-up rows per series instead of 8,640. Dirty hours
    and their neighbours are read raw. `cloud.apps.figures` computes the same figures from these
    rows as from `series_windows`' whenever every interval boundary is a whole UTC hour; the
    caller checks that. A range not on whole hours (or before 1970) is served by
    `series_windows`.

    Where retention has deleted raw readings but kept their roll-ups, the compressed hours still
    hold the expired readings' first and last: the figures then show consumption the raw rows
    no longer can (docs/figures.md)."""

    async def counter_windows(
        self,
        series_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        *,
        context_ms: int,
        excursion_ms: int,
        budget_rows: int,
        probe_after: bool = True,
    ) -> AsyncIterator[list[CounterWindow]]:
        """Per chunk of series, their `CounterWindow`s (see the class)."""
        lo, hi = from_ms - context_ms, to_ms + context_ms
        # Roll-up buckets truncate toward zero: before 1970 an "hour" is two hours wide.
        if lo % HOUR_MS or hi % HOUR_MS or lo < 0:
            async for chunk in self.series_windows(
                series_ids,
                from_ms,
                to_ms,
                context_ms=context_ms,
                budget_rows=budget_rows,
                probe_after=probe_after,
            ):
                yield [CounterWindow(sid, rows) for sid, rows in chunk]
            return
        kind = self.kind
        margin_h = -(-excursion_ms // HOUR_MS)
        read = 0
        for start in range(0, len(series_ids), CHUNK):
            ids = series_ids[start : start + CHUNK]
            before = {
                int(r[0]): (int(r[1]), float(r[2]), int(r[3]))
                for r in await self._fetch_rows(
                    probe_sql(kind, len(ids), before=True), [lo, *_params(kind, ids)]
                )
            }
            after: dict[int, Row] = {}
            if probe_after:
                after = {
                    int(r[0]): (int(r[1]), float(r[2]), int(r[3]))
                    for r in await self._fetch_rows(
                        probe_sql(kind, len(ids), before=False), [hi, *_params(kind, ids)]
                    )
                }
            summaries: dict[int, list[HourSummary]] = {sid: [] for sid in ids}
            found = await self._fetch_rows(rollup_sql(kind, len(ids)), _params(kind, ids, lo, hi))
            read += len(found)
            for r in found:
                summaries[r[0]].append(HourSummary._make(r))
            out = []
            for sid in ids:
                hours = summaries[sid]
                b, a = before.get(sid), after.get(sid)
                keep = compressible(
                    hours, None if b is None else b[1], None if a is None else a[1], margin_h
                )
                rows: list[Row] = [b] if b is not None else []
                excluded = 0
                raw_from: int | None = None  # the start of a run of hours read raw
                for h in [*hours, None]:
                    if h is not None and h.u_n > 0 and h.bucket_ms not in keep:
                        if raw_from is None:
                            raw_from = h.bucket_ms
                        continue
                    if raw_from is not None:
                        end = h.bucket_ms if h is not None else hi
                        raw = await self._fetch_rows(
                            queries.fmt(queries.READINGS_ALL, "%s" if kind == "postgres" else "?")
                            + " ORDER BY ts_ms",
                            (sid, raw_from, end),
                        )
                        read += len(raw)
                        rows.extend((int(t), float(v), int(q)) for t, v, q in raw)
                        raw_from = None
                    if h is None:
                        break
                    excluded += h.x_n
                    if h.u_n > 0:
                        rows.append((h.u_first_ts_ms, h.u_first_value, 0))
                        if h.u_n > 1:
                            rows.append((h.u_last_ts_ms, h.u_last_value, 0))
                if read > budget_rows:
                    raise RowBudgetError(f"more than {budget_rows} readings to read")
                if a is not None:
                    rows.append(a)
                out.append(CounterWindow(sid, rows, excluded))
            yield out
