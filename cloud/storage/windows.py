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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from cloud.errors import RowBudgetError
from cloud.storage.reads import Row

CHUNK = 25  # series per round trip
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
