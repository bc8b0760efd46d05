"""The buffer's state and the plumbing its parts share: the fields of an open buffer, its
transactions (which also carry the deletes of acknowledged batches, invariant 3), `meta` and its
counters, the journal reset. The invariants are listed in `agent.buffer`, numbered as there.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import operator
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.buffer_file import Damage
from agent.errors import StoreError
from agent.journal import (
    Journal,
    Record,
    encode_record,
)
from wire.models import SeriesKey

# One logger for the whole buffer, whichever of its modules logs: operators filter on it.
log = logging.getLogger("agent.buffer")

NewRow = tuple[int, int, float, int]  # series_id, ts_ms, value, quality
Position = tuple[int, int]  # an MCU's (boot, seq)
# A merge at the latest when the journal holds this much unmerged (about 10,000 readings): it
# bounds the replay on start and the buffer's overshoot of max_bytes between merges.
JOURNAL_MAX_BYTES = 256 * 1024
# Merged records are dropped (the journal reset to its base record) once the file is past this
# size: a reset costs one more page write and sync, so not after every merge.
JOURNAL_RESET_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    digest: bytes
    body: bytes
    readings: int
    oldest_ts_ms: int | None
    events: int = 0


@dataclass(slots=True)
class CommitResult:
    committed: int = 0
    dropped: int = 0  # readings and events
    events: int = 0


@dataclass(slots=True)
class BufferState:
    """What an open buffer holds in memory, and the plumbing of its transactions.
    `agent.buffer.Buffer` is the whole buffer."""

    conn: sqlite3.Connection
    path: str
    max_bytes: int
    kernel_boot_id: str
    series: dict[int, SeriesKey] = field(default_factory=dict)
    deltas: dict[int, int] = field(default_factory=dict)  # epoch id -> correction, when known
    meta: dict[str, Any] = field(default_factory=dict)
    depth: int = 0  # readings held: uncut plus frozen in the outbox
    events_held: int = 0  # events held, likewise
    positions: dict[int, Position] = field(default_factory=dict)  # MCU uid -> committed
    states: dict[str, bytes] = field(default_factory=dict)  # source state key -> committed
    spans: dict[int, str] = field(default_factory=dict)  # config span -> version (invariant 7)
    cfg: int = 0  # the span new rows are committed under
    last: dict[int, tuple[int, float]] = field(default_factory=dict)  # series -> newest committed
    damage: Damage | None = None
    lock_fd: int = -1
    journal: Journal | None = None
    journal_max_bytes: int = JOURNAL_MAX_BYTES
    journal_reset_bytes: int = JOURNAL_RESET_BYTES
    _page_size: int = 4096
    _set_aside_logged: set[str] = field(default_factory=set)
    _pending: list[Record] = field(default_factory=list)  # journaled, not merged, oldest first
    _pending_bytes: int = 0  # their framed size
    _journal_seq: int = 0  # the last record seq given out (merged or pending)
    _journal_stale: bool = False  # merged, but the reset failed: no appends until it works
    _merging: bool = False  # the open transaction merges the pending records
    _evicted_unreported: int = 0  # evicted by merges, for the next CommitResult
    # acknowledged, still in the file until the next transaction (invariant 3):
    # seq -> (readings, events, now_ms of the ack)
    _acked: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def used_bytes(self) -> int:
        pages = self._query("PRAGMA page_count").fetchone()[0]
        free = self._query("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    def _unacked(self) -> str:
        """A WHERE clause on `outbox` leaving out the batches acknowledged in memory only."""
        return f"seq NOT IN ({','.join(str(int(s)) for s in self._acked)})" if self._acked else "1"

    def _apply_acks(self) -> None:
        """Inside a transaction: delete the acknowledged batches and count them (invariant 3)."""
        acked = self._acked
        self.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in acked])
        self._add_counter("acked_readings", sum(r for r, _e, _t in acked.values()))
        self._add_counter("acked_events", sum(e for _r, e, _t in acked.values()))
        self._add_counter("acked_batches", len(acked))
        self._set("last_sync_ms", max(t for _r, _e, t in acked.values()))
        if not self.meta.get("chain_confirmed", 0):
            self._set("chain_confirmed", 1)

    def _outbox_readings(self) -> int:
        sql = f"SELECT coalesce(sum(readings), 0) FROM outbox WHERE {self._unacked()}"  # noqa: S608
        return int(self._query(sql).fetchone()[0])

    def _outbox_events(self) -> int:
        sql = f"SELECT coalesce(sum(events), 0) FROM outbox WHERE {self._unacked()}"  # noqa: S608
        return int(self._query(sql).fetchone()[0])

    def _write_last(self, last: Mapping[int, tuple[int, float]]) -> None:
        """Inside a transaction: every series' newest value into the `series` table, which then
        holds them as of the last journal seq given out. Replay overlays only newer records:
        an older one (merged, or a base record) must not hide rows a direct commit wrote to
        the table alone (invariant 8)."""
        self.conn.executemany(
            "UPDATE series SET last_ts_ms = ?, last_value = ? WHERE id = ?",
            [(ts, value, sid) for sid, (ts, value) in last.items()],
        )
        self._set("journal_series_seq", self._journal_seq)

    def _set(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        self.meta[key] = value

    def _add_rejected(self, reasons: Mapping[str, int], *, refused: bool) -> None:
        """Count what the contract refused, by reason. `refused`: at the door, never committed
        (not yet in a batch's counters, so pending); else set aside in the batch being cut,
        whose counters already hold it."""
        total = sum(reasons.values())
        if not total:
            return
        self._add_counter("rejected_invalid", total, pending=refused)
        if refused:
            self._add_counter("refused", total)
        for reason, n in reasons.items():
            self._add_counter(f"rejected_by_{reason}", n)

    def _add_counter(self, name: str, n: int, *, pending: bool = False) -> None:
        if n:
            self._set(f"total_{name}", int(self.meta.get(f"total_{name}", 0)) + n)
            if pending:
                self._set(f"pending_{name}", int(self.meta.get(f"pending_{name}", 0)) + n)

    def _query(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        snapshot = dict(self.meta)
        depth, events_held, evicted = self.depth, self.events_held, self._evicted_unreported
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            if self._acked:
                self._apply_acks()
            yield
            self.conn.execute("COMMIT")
        except BaseException as exc:
            # The in-memory mirrors must not get ahead of the file.
            self.meta, self.depth, self.events_held = snapshot, depth, events_held
            self._evicted_unreported = evicted
            self._merging = False
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: {exc}") from exc
            raise
        self._acked.clear()  # applied by this transaction
        if self._merging:
            self._merging = False
            self._pending.clear()
            self._pending_bytes = 0
            if self._journal_stale or (
                self.journal is not None and self.journal.size > self.journal_reset_bytes
            ):
                self._reset_journal()

    def _reset_journal(self) -> None:
        """After a merge committed: reset the journal to its base record (invariant 8). Never
        raises: the merge stands, and its records are skipped on replay anyway (journal
        invariant 2); but the file's state is unknown, so until a later merge resets it,
        commits go straight to the tables."""
        if self.journal is None:
            return
        base = Record(
            seq=self._journal_seq,  # at most the merged seq: never replayed as readings
            rows=[
                (sid, ts, math.nan if value is None else value, 0)
                for sid, (ts, value) in self.last.items()
            ],
        )
        try:
            self.journal.reset(encode_record(base))
        except StoreError as exc:
            if not self._journal_stale:
                log.error("%s; committing straight to the buffer until it can be emptied", exc)
            self._journal_stale = True
        else:
            self._journal_stale = False


def newest_values(rows: Sequence[NewRow]) -> dict[int, tuple[int, float]]:
    """Each series' last (ts_ms, value) in `rows`. Runs once per commit over every row, so the
    per-row part is C (dict keeps the last row of each key): no tuple a row."""
    return {
        sid: (row[1], row[2])
        for sid, row in dict(zip(map(_SERIES_ID, rows), rows, strict=True)).items()
    }


_SERIES_ID = operator.itemgetter(0)


def span_runs(records: Sequence[Record]) -> list[tuple[int, list[Record]]]:
    """`records` cut into runs of consecutive records of one config span, in order."""
    return [(cfg, list(run)) for cfg, run in itertools.groupby(records, key=lambda r: r.cfg)]


def sql_uid(uid: int) -> int:
    """An MCU's u64 uid as SQLite's signed 64-bit integer (same bits)."""
    return uid - (1 << 64) if uid >= 1 << 63 else uid


def mcu_uid(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
