"""Readings in: group commits (one journal record or one transaction), the journal's merge and
replay, the size bound, config spans and clock epochs (`agent.buffer` invariants 1, 4, 7, 8).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.batcher import encode_attrs
from agent.buffer_state import (
    BufferState,
    CommitResult,
    NewRow,
    Position,
    newest_values,
    span_runs,
    sql_uid,
)
from agent.clock import Epoch, Reference, epoch_delta
from agent.journal import (
    Journal,
    Record,
    decode_journal,
    encode_record,
)
from wire.models import Event, SeriesKey

# One logger for the whole buffer, whichever of its modules logs: operators filter on it.
log = logging.getLogger("agent.buffer")

# A bigger group goes straight to the tables: it fills its pages, so the journal saves nothing.
JOURNAL_MAX_GROUP = 5000


class BufferCommits(BufferState):
    """Readings, events, positions and states in, durably (invariant 1)."""

    __slots__ = ()

    def commit(
        self,
        rows: Sequence[NewRow],
        *,
        new_series: Sequence[tuple[int, SeriesKey]] = (),
        new_epochs: Sequence[Epoch] = (),
        references: Sequence[Reference] = (),
        dropped_before: int = 0,
        events: Sequence[Event] = (),
        positions: Mapping[int, Position | None] | None = None,
        rejected_before: Mapping[str, int] | None = None,
        states: Mapping[str, bytes] | None = None,
    ) -> CommitResult:
        """Write one group of readings (and the events, MCU positions and metadata that go with
        them) durably, as one unit: one journal record, or one transaction (invariant 1).

        `dropped_before` counts readings and events the caller had to refuse before they got
        here (an overflowing ingest queue); they are recorded as buffer-full drops.
        `rejected_before` counts, by reason, what the ingest refused because it breaks the
        contract: recorded as `rejected_invalid`, reported with the next batch. `positions`
        maps an MCU uid to its new committed position, or to None to forget it. `states` maps a
        source's key to its new state (`Ingest.track_state`), replaced in this transaction.
        `CommitResult.dropped` also carries evictions made by merges since the last commit.
        """
        record = Record(
            seq=self._journal_seq + 1,
            rows=list(rows),
            events=[(e.kind, e.ts_ms, e.quality, encode_attrs(e.attrs)) for e in events],
            positions=dict(positions or {}),
            states=dict(states or {}),
            dropped_before=dropped_before,
            rejected_before=dict(rejected_before or {}),
            cfg=self.cfg,
        )
        plain = not (new_series or new_epochs or references)
        small = len(rows) + len(events) <= JOURNAL_MAX_GROUP
        frame = encode_record(record) if plain and small else b""
        journal = self.journal
        if frame and journal is not None and self._journal_takes(len(frame)):
            journal.append(frame)
            self._journal_seq = record.seq
            self._pending.append(record)
            self._pending_bytes += len(frame)
        else:
            with self._transaction():
                self._merge()  # the journal's records are older: their rows get lower ids
                if new_series:
                    self.conn.executemany(
                        "INSERT INTO series (id, metric, unit, site, area, process, medium) "
                        "VALUES (?,?,?,?,?,?,?)",
                        [
                            (i, k.metric, k.unit, k.site, k.area, k.process, k.medium)
                            for i, k in new_series
                        ],
                    )
                if new_epochs:
                    self.conn.executemany(
                        "INSERT INTO epoch (id, kernel_boot_id, base_ms, base_mono_ms) "
                        "VALUES (?,?,?,?)",
                        [(e.id, e.kernel_boot_id, e.base_ms, e.base_mono_ms) for e in new_epochs],
                    )
                for ref in references:
                    self._correct_epochs(ref)
                self._merge([record], journaled=False)
        self.depth += len(rows)
        self.events_held += len(events)
        if new_series:
            self.series.update(new_series)
        for uid, pos in record.positions.items():
            if pos is None:
                self.positions.pop(uid, None)
            else:
                self.positions[uid] = pos
        self.states.update(record.states)
        self.last.update(newest_values(record.rows))
        evicted, self._evicted_unreported = self._evicted_unreported, 0
        return CommitResult(
            committed=len(rows), dropped=evicted + dropped_before, events=len(events)
        )

    def _journal_takes(self, frame_bytes: int) -> bool:
        """Whether a plain commit may go to the journal, or must merge it now: the journal is
        bounded, and a full buffer must evict at this commit as it always did (invariant 4)."""
        if self.journal is None or self._journal_stale:
            return False
        size = self._pending_bytes + frame_bytes
        return size <= self.journal_max_bytes and self.used_bytes() + size <= self.max_bytes

    def _merge(
        self,
        records: Sequence[Record] | None = None,
        *,
        journaled: bool = True,
        insert_rows: bool = True,
    ) -> None:
        """Inside a transaction: apply journal records to the tables, then keep the bound.

        With no `records`, the pending journal records; once the transaction commits they are
        dropped from memory and the journal is reset (journal invariant 2). `journaled`
        False: a record that never went to the journal (a direct commit), whose rows are not
        counted in `depth` yet. `insert_rows` False (`cut`): everything but inserting the rows
        and keeping the bound, which the caller does for the rows its batch does not take.
        """
        if records is None:
            records = self._pending
            if self._journal_stale:
                self._merging = True  # try the reset again after this transaction
            if not records:
                return
            self._merging = True
            self._set("journal_merged_seq", self._journal_seq)
        c = self.conn
        rows = records[0].rows if len(records) == 1 else [row for r in records for row in r.rows]
        if rows and insert_rows:
            # each record's rows under the span it was committed in (invariant 7), in commit
            # order; the span goes in the statement, not in a new tuple for every row
            for cfg, run in span_runs(records):
                c.executemany(
                    "INSERT INTO reading (series_id, ts_ms, value, quality, cfg) "  # noqa: S608
                    f"VALUES (?,?,?,?,{cfg:d})",
                    rows if len(run) == len(records) else [row for r in run for row in r.rows],
                )
            # A cut (insert_rows False) leaves them to the journal's base record: one row per
            # series rewritten every cut is the biggest write left (invariant 8). Here every
            # series is written, not only these rows' (a cut may have left others behind), so
            # the table holds every newest value as of `journal_series_seq`.
            last = dict(self.last)
            last.update(newest_values(rows))
            self._write_last(last)
        events = [e for r in records for e in r.events]
        if events:
            for cfg, run in span_runs(records):
                c.executemany(
                    "INSERT INTO event (kind, ts_ms, quality, attrs, cfg) "  # noqa: S608
                    f"VALUES (?,?,?,?,{cfg:d})",
                    [e for r in run for e in r.events],
                )
        positions: dict[int, tuple[int, int] | None] = {}
        states: dict[str, bytes] = {}
        rejected: Counter[str] = Counter()
        for r in records:
            positions.update(r.positions)
            states.update(r.states)
            rejected.update(r.rejected_before)
        for uid, pos in positions.items():
            if pos is None:
                c.execute("DELETE FROM mcu_position WHERE uid = ?", (sql_uid(uid),))
            else:
                c.execute(
                    "INSERT OR REPLACE INTO mcu_position (uid, boot, seq) VALUES (?,?,?)",
                    (sql_uid(uid), *pos),
                )
        if states:
            c.executemany(
                "INSERT OR REPLACE INTO source_state (name, value) VALUES (?,?)",
                list(states.items()),
            )
        if not journaled:
            self.depth += len(rows)
            self.events_held += len(events)
        self._add_counter("committed", len(rows))
        self._add_counter("committed_events", len(events))
        self._add_counter(
            "dropped_buffer_full", sum(r.dropped_before for r in records), pending=True
        )
        self._add_rejected(rejected, refused=True)
        if insert_rows:
            self._bound()
        if not journaled:  # the caller adds the record's own rows back after the transaction
            self.depth -= len(rows)
            self.events_held -= len(events)

    def _bound(self) -> None:
        """Inside a transaction: evict to fit `max_bytes`, counted (invariant 4)."""
        evicted, evicted_events = self._enforce_bound()
        self._add_counter("evicted", evicted)
        self._add_counter("evicted_events", evicted_events)
        self._add_counter("dropped_buffer_full", evicted + evicted_events, pending=True)
        self._evicted_unreported += evicted + evicted_events

    def _enforce_bound(self) -> tuple[int, int]:
        """Evict until the file fits: uncut readings, oldest first; then uncut events."""
        dropped = dropped_events = 0
        for _ in range(16):
            used = self.used_bytes()
            if used <= self.max_bytes:
                break
            held = self.depth + self.events_held
            per_item = max(used / max(held, 1), 8.0)
            # a page's worth of slack: freed space only shows once whole pages empty
            n = int((used - self.max_bytes + self._page_size) / per_item) + 1
            uncut = self.depth - self._outbox_readings()
            if uncut > 0:
                cur = self.conn.execute(
                    "DELETE FROM reading WHERE id IN (SELECT id FROM reading ORDER BY id LIMIT ?)",
                    (min(uncut, n),),
                )
                dropped += cur.rowcount
                self.depth -= cur.rowcount
                continue
            uncut_events = self.events_held - self._outbox_events()
            if uncut_events <= 0:
                break
            cur = self.conn.execute(
                "DELETE FROM event WHERE id IN (SELECT id FROM event ORDER BY id LIMIT ?)",
                (min(uncut_events, n),),
            )
            dropped_events += cur.rowcount
            self.events_held -= cur.rowcount
        return dropped, dropped_events

    def replay_journal(self, path: Path) -> None:
        """On open: merge what the journal holds beyond the last merge, keep it open for appends.
        A torn or corrupt tail is dropped with a warning (journal invariant 3)."""
        self.journal = Journal.open(path)
        decoded = decode_journal(self.journal.read())
        # The newest values: the series table's, overlaid with the records written after it
        # (merged by cuts or not, and a base record); older ones are in the table or behind it.
        written = int(self.meta.get("journal_series_seq", 0))
        for r in decoded.records:
            if r.seq > written:
                self.last.update(newest_values(r.rows))
        if decoded.problem is not None:
            log.warning(
                "%s: %s; the %d byte(s) from there on are dropped (an append cut short by a crash "
                "or power loss: every commit that returned lies before it)",
                path,
                decoded.problem,
                self.journal.size - decoded.good_bytes,
            )
        fresh = [r for r in decoded.records if r.seq > self._journal_seq]
        for r in fresh:
            self.depth += len(r.rows)
            self.events_held += len(r.events)
            for uid, pos in r.positions.items():
                if pos is None:
                    self.positions.pop(uid, None)
                else:
                    self.positions[uid] = pos
            self.states.update(r.states)
        # A bad tail must go before anything is appended after it: stale forces the reset.
        self._journal_stale = decoded.problem is not None
        if fresh:
            self._pending = fresh
            self._pending_bytes = decoded.good_bytes  # an upper bound: merged ones too
            self._journal_seq = fresh[-1].seq
            self.merge()
        elif self._journal_stale:
            self._reset_journal()

    def merge(self) -> None:
        """Move the journal's records into the tables now (also done by `cut` and `close`)."""
        if self._pending:
            with self._transaction():
                self._merge()

    @property
    def config_version(self) -> str:
        """The version rows committed now are recorded under ("" before any was set)."""
        return self.spans.get(self.cfg, "")

    def set_config_version(self, version: str) -> None:
        """From the next commit on, rows were taken under config `version` (invariant 7).
        Everything committed before keeps the version it was taken under. The caller commits
        what it holds in memory first."""
        if version == self.config_version:
            return
        with self._transaction():
            cfg = max(self.spans, default=0) + 1
            self.conn.execute("INSERT INTO config_span (id, version) VALUES (?, ?)", (cfg, version))
            self._set("config_span", cfg)
        self.spans[cfg] = version
        self.cfg = cfg

    def _correct_epochs(self, ref: Reference) -> None:
        rows = self.conn.execute(
            "SELECT id, kernel_boot_id, base_ms, base_mono_ms FROM epoch WHERE delta_ms IS NULL"
        ).fetchall()
        for eid, boot, base_ms, base_mono in rows:
            if boot != self.kernel_boot_id:
                continue  # another boot's monotonic clock: cannot be related to this reference
            delta = epoch_delta(Epoch(eid, boot, base_ms, base_mono), ref)
            self.conn.execute("UPDATE epoch SET delta_ms = ? WHERE id = ?", (delta, eid))
            self.deltas[eid] = delta

    def last_values(self) -> dict[int, tuple[int, float]]:
        """The newest (ts_ms, value) committed per series, across restarts (invariant 8)."""
        return dict(self.last)

    def clock_floor_ms(self) -> int:
        """The newest timestamp this buffer ever committed: time cannot be earlier than that."""
        return max((ts for ts, _v in self.last.values()), default=0)

    def next_epoch_id(self) -> int:
        return int(self._query("SELECT coalesce(max(id), 0) + 1 FROM epoch").fetchone()[0])
