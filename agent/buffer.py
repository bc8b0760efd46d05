"""The store-and-forward buffer: one SQLite file in WAL mode, one writer.

Tables: `reading` (uncut readings, oldest = lowest id), `event` (uncut events, likewise), `outbox`
(frozen batches: seq, digest, body, stored deflated when that is smaller: `coding`), `series`,
`epoch` (untrusted-clock stretches, see `agent.clock`), `mcu_position` (per MCU uid, the last
(boot, seq) committed; see `agent.watermarks`), `source_state` (per source, a small opaque record
committed with its readings: the MQTT source's redelivery record), `config_span` (the config
versions readings were taken under, invariant 7) and `meta` (chain head, loss counters, uplink
state).

Invariants (each kept by one method below):
1. Group commit (`commit`): readings, events, MCU positions and source states reach the disk
   as one unit per flush (one journal record, invariant 8, or one transaction), never one write
   per reading. A position (or a source's state) is committed in the same unit as the readings
   it covers, so after any crash the two agree. The journal is fdatasynced at every append and
   `PRAGMA synchronous=FULL` fsyncs the WAL at every transaction, so a commit that returned
   survives a power cut; what is lost is what was not yet committed, i.e. at most one
   flush interval (`buffer.flush_interval_ms`) or `flush_max_readings` readings. NORMAL would
   lose an unbounded number of commits back to the last checkpoint, and (worse) could forget a
   batch cut after it was sent (invariant 2).
2. Frozen batches (`cut`): in one transaction the oldest readings (or, for a live batch, the
   newest) and the oldest events are encoded as batch `head_seq + 1` with `prev = head_digest`
   (GENESIS for seq 1), the body is inserted into `outbox`, those readings and events are deleted
   from `reading` and `event`, and the head advances. With FULL this commit is durable before
   the body's first send, so every retry, after any crash, sends the same bytes; a reused seq
   with other bytes would be a fork. The body is stored deflated (`coding` 1, zlib) when that
   is smaller, as it is for meter data by 10-20 times: the cut's pages are the biggest write
   after the journal's on an SD card. `outbox_head` inflates it, so the bytes sent and their
   digest are the body's own. (An older agent reading the file would send a deflated body as
   it is: the receiver refuses it and uploads stop, nothing is lost, until this agent is back.)
3. Delete after ack (`ack`): an outbox row goes only when the receiver acknowledged its seq.
   The delete (and the ack counters) ride the buffer's next transaction, usually the next
   cut's, not one of their own: a transaction costs a WAL sync and its pages on the card. Until
   then the batch is acknowledged in memory only (`_acked`: never offered again, not counted
   held); a crash before that transaction sends it once more after restart, which the receiver
   answers as a duplicate (it dedupes by seq and digest), so nothing is lost, duplicated or
   forked. The first ack of an unconfirmed chain (invariant 6) is written at once. A
   reading (or event) leaves its table only by moving into an outbox body in the same
   transaction, or by a counted drop (invariant 4), or set aside by the cut that would have
   carried it because the contract refuses it (a row an older version stored): deleted in that
   transaction, counted in that batch's `rejected_invalid` and by reason in `meta`.
4. Bounded, loss counted (`commit`): when the file's used pages exceed `max_bytes`, the oldest
   uncut readings are deleted and counted in `meta` in the same transaction; the count rides in
   the next batch's `Counters` and is zeroed in the transaction that freezes that batch, so a
   count is reported exactly once. Frozen batches are never dropped: their seq is taken. Events
   take space like readings; they are evicted (oldest first, counted the same way, as
   `dropped_buffer_full`: the wire has one loss counter) only when no uncut reading is left to
   evict, because a ticket is worth more than a meter sample.
5. Damage (`open_buffer`): a file SQLite cannot read, or that fails `quick_check`, is renamed to
   `<name>.damaged-<UTC time>` with its -wal/-shm (never deleted); a fresh file starts, its chain
   unconfirmed, and the loss (readings counted in the old file if it can still be read) is
   reported as `dropped_damaged`.
6. A fresh file's chain is unconfirmed (`chain_confirmed = 0`) until the uplink adopts the
   receiver's head (`adopt_head`) or gets an ack, so losing the buffer never forks the chain.
7. Provenance (`set_config_version`, `cut`): every reading and event row carries `cfg`, the
   `config_span` in force when it was committed (0: before spans existed, version unknown); a
   journal record (invariant 8) carries it for its rows, and its merge inserts them under it.
   A new span starts only when the version changes, and ids only grow while rows are held, so
   the rows of one span are a contiguous run of ids, older spans before newer ones. A cut
   takes the rows of one span only (the oldest span present; a live cut the newest span's
   readings, and events only when the oldest event is of that span) and names that span's
   version in the batch: readings buffered under config A and sent after a switch to B still
   say A, and no batch mixes two configs. The cut deletes by id range *and* span, so even rows
   of an older agent interleaved with spans (a downgrade and back) are never taken by another
   span's cut. What this costs: nothing for the first span, a byte a row after a change.
8. Append journal (`commit`, `_merge`, `agent.journal`): a plain group commit (no new series,
   epochs or clock references; at most `JOURNAL_MAX_GROUP` readings and events) is one
   fsynced journal record instead of a transaction; it is as durable, and its readings,
   events, positions and states are one record, so they still agree after any crash. Records
   merge into the tables, in commit order, in the transaction of the next cut (whose batch
   takes their rows directly when they are all of the span it cuts, invariant 7; otherwise
   they are inserted and the cut is made from the tables), of a commit that is not plain,
   when the journal holds `JOURNAL_MAX_BYTES` unmerged or the buffer would pass `max_bytes`,
   and on open (replay) and close. Each record carries the span of its rows (`Record.cfg`;
   0, unknown, in a record from before spans were journaled). Merged records stay in the
   journal (skipped by seq on replay) until it passes `journal_reset_bytes`; then it is reset
   to one base record holding every series' newest value. Those values (`last_values`, the
   clock floor) are the `series` table's, written whole (with `journal_series_seq`, the seq
   it is current to) by every merge outside a fast cut and by a clean close, overlaid with the
   rows of the journal's records above that seq only: an older record must not hide a value
   a direct commit wrote to the table alone. A new file never replays an old journal (moved
   aside as `.orphaned-<time>`).

Not thread-safe; the runtime calls it from one worker thread. sqlite3 errors are translated to
StoreError here and nowhere else.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import math
import operator
import os
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.batcher import EventRow, Row, build_body, encode_attrs
from agent.clock import Epoch, Reference, epoch_delta
from agent.errors import StoreDamagedError, StoreError
from agent.journal import (
    JOURNAL_SUFFIX,
    Journal,
    Record,
    decode_journal,
    encode_record,
    readings_after,
)
from wire.codec import MAX_EVENTS, batch_digest
from wire.errors import EncodeError
from wire.models import GENESIS, ClockReport, Counters, Event, SeriesKey

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: event and mcu_position tables, outbox.events
_SCHEMA = """
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
_CFG_COLUMNS = ("reading", "event")
# outbox.coding (invariant 2): how `body` is stored; added like cfg, DEFAULT 0 for older rows
CODING_RAW, CODING_DEFLATE = 0, 1
_COUNTERS = ("dropped_buffer_full", "dropped_damaged", "rejected_invalid")
NewRow = tuple[int, int, float, int]  # series_id, ts_ms, value, quality
Position = tuple[int, int]  # an MCU's (boot, seq)
# A merge at the latest when the journal holds this much unmerged (about 10,000 readings): it
# bounds the replay on start and the buffer's overshoot of max_bytes between merges.
JOURNAL_MAX_BYTES = 256 * 1024
# A bigger group goes straight to the tables: it fills its pages, so the journal saves nothing.
JOURNAL_MAX_GROUP = 5000
# Merged records are dropped (the journal reset to its base record) once the file is past this
# size: a reset costs one more page write and sync, so not after every merge.
JOURNAL_RESET_BYTES = 1024 * 1024
# 1 KiB pages for a new file: a commit rewrites whole pages into the WAL (and the checkpoint
# writes them again), so small pages are fewer bytes on the card. An older file keeps its size.
PAGE_SIZE = 1024
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


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
class Damage:
    moved_to: str
    readings_lost: int
    reason: str


@dataclass(slots=True)
class Buffer:
    """An open buffer file. Build it with `open_buffer`."""

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

    # -- reading in -------------------------------------------------------------------------

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
            for cfg, run in _span_runs(records):
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
            for cfg, run in _span_runs(records):
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
                c.execute("DELETE FROM mcu_position WHERE uid = ?", (_sql_uid(uid),))
            else:
                c.execute(
                    "INSERT OR REPLACE INTO mcu_position (uid, boot, seq) VALUES (?,?,?)",
                    (_sql_uid(uid), *pos),
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

    def _cut_span(self, *, newest: bool) -> int | None:
        """The span the next batch is cut from: the oldest present, or for a live batch the
        newest reading's; None when no reading or event is held uncut."""
        first = self.conn.execute(
            f"SELECT cfg FROM reading ORDER BY id {'DESC' if newest else 'ASC'} LIMIT 1"  # noqa: S608
        ).fetchone()
        event = self.conn.execute("SELECT cfg FROM event ORDER BY id LIMIT 1").fetchone()
        found = [int(r[0]) for r in (first, event) if r is not None]
        if not found:
            return None
        return found[0] if newest and first is not None else min(found)

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

    def used_bytes(self) -> int:
        pages = self._query("PRAGMA page_count").fetchone()[0]
        free = self._query("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    # -- batches out ------------------------------------------------------------------------

    def outbox_head(self) -> OutboxEntry | None:
        """The oldest frozen batch, to send (again) before anything new is cut."""
        row = self._query(
            "SELECT seq, digest, body, readings, oldest_ts_ms, events, coding "  # noqa: S608
            f"FROM outbox WHERE {self._unacked()} ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        seq, digest, body, readings, oldest_ts_ms, events, coding = row
        try:
            body = stored_body(body, coding)
        except ValueError as exc:
            raise StoreError(f"{self.path}: batch {seq}: {exc}") from exc
        return OutboxEntry(seq, digest, body, readings, oldest_ts_ms, events)

    def outbox_batches(self) -> int:
        """Frozen batches not yet acknowledged."""
        return int(
            self._query(f"SELECT count(*) FROM outbox WHERE {self._unacked()}").fetchone()[0]  # noqa: S608
        )

    def uncut(self) -> int:
        return self.depth - self._outbox_readings()

    def uncut_events(self) -> int:
        return self.events_held - self._outbox_events()

    def waiting(self) -> int:
        """Readings and events not yet cut into a batch: what decides when to cut."""
        return self.uncut() + self.uncut_events()

    def cut(
        self,
        *,
        device_id: str,
        boot_id: str,
        clock: ClockReport,
        max_readings: int,
        max_bytes: int,
        newest: bool = False,
    ) -> OutboxEntry | None:
        """Freeze the next batch (invariant 2); None when there is nothing to report."""
        with self._transaction():
            # The journal's rows join the batch without a trip through the readings table
            # (inserted, then deleted: pages written for nothing), unless the batch takes the
            # newest rows, events are pending (rare; kept simple), the buffer must evict, or
            # the journal holds rows of a span other than the one this batch is cut from
            # (invariant 7: those are merged and wait in the table for a batch of their own).
            pending_spans = {r.cfg for r in self._pending if r.rows}
            table_span = None if newest else self._cut_span(newest=False)
            fast = (
                not newest
                and not any(r.events for r in self._pending)
                and self.used_bytes() + self._pending_bytes <= self.max_bytes
                and len(pending_spans) <= 1
                and (table_span is None or pending_spans <= {table_span})
            )
            fresh = [row for r in self._pending for row in r.rows] if fast else []
            # reading and event tables as they were: a fast merge inserts neither
            self._merge(insert_rows=not fast)
            if not fast:
                span = self._cut_span(newest=newest)
            elif table_span is None and pending_spans:
                span = min(pending_spans)  # the only one
            else:
                span = table_span
            order = "DESC" if newest else "ASC"
            rows: list[Row] = self.conn.execute(
                f"SELECT id, series_id, ts_ms, value, quality FROM reading "  # noqa: S608
                f"WHERE cfg = ? ORDER BY id {order} LIMIT ?",
                (span, max_readings),
            ).fetchall()
            in_table = len(rows)
            # the journal's rows are of `span` and newer than every row in the table; the
            # batch takes them only after all of the span's rows the table holds
            if fresh and in_table < max_readings:
                base = rows[-1][0] if rows else 0
                rows += [
                    (base + i, sid, ts, None if math.isnan(v) else v, q)  # as SQLite holds NaN
                    for i, (sid, ts, v, q) in enumerate(fresh[: max_readings - in_table], 1)
                ]
            # events go oldest first in every batch, live or not: they are few and in order; only
            # the oldest event's span keeps them a prefix of the table (invariant 7)
            events: list[EventRow] = self.conn.execute(
                "SELECT id, kind, ts_ms, quality, attrs FROM event "
                "WHERE cfg = ? AND cfg = (SELECT cfg FROM event ORDER BY id LIMIT 1) "
                "ORDER BY id LIMIT ?",
                (span, min(max_readings, MAX_EVENTS)),
            ).fetchall()
            counters = Counters(*(int(self.meta.get(f"pending_{n}", 0)) for n in _COUNTERS))
            if not rows and not events and counters == Counters():
                return None
            seq = int(self.meta.get("head_seq", 0)) + 1
            prev = bytes(self.meta.get("head_digest", GENESIS))
            take, take_events = len(rows), len(events)
            while True:
                part, part_events = rows[:take], events[:take_events]
                try:
                    built = build_body(
                        part,
                        events=part_events,
                        series=self.series,
                        deltas=self.deltas,
                        device_id=device_id,
                        seq=seq,
                        prev=prev,
                        boot_id=boot_id,
                        clock=clock,
                        counters=counters,
                        config_version=(
                            self.config_version if span is None else self.spans.get(span, "")
                        ),
                    )
                except EncodeError as exc:
                    # build_body sets aside every reading and event the contract refuses, so
                    # what is left is the batch's own fields: device id, boot id (the config)
                    raise StoreError(f"cannot encode batch {seq}: {exc}") from exc
                if len(built.body) <= max_bytes or (take <= 1 and take_events <= 1):
                    break
                take, take_events = max(1, take // 2), max(1, take_events // 2)
            digest = batch_digest(built.body)
            from_table = part[:in_table]
            if from_table:
                ids = [r[0] for r in from_table]
                if newest:
                    self.conn.execute(
                        "DELETE FROM reading WHERE id >= ? AND cfg = ?", (min(ids), span)
                    )
                else:
                    self.conn.execute(
                        "DELETE FROM reading WHERE id <= ? AND cfg = ?", (max(ids), span)
                    )
            if fast:  # the journal's rows this batch does not carry wait in the table
                left = fresh[max(0, len(part) - in_table) :]
                if left:
                    self.conn.executemany(
                        "INSERT INTO reading (series_id, ts_ms, value, quality, cfg) "  # noqa: S608
                        f"VALUES (?,?,?,?,{span or 0:d})",
                        left,
                    )
            if part_events:
                self.conn.execute(
                    "DELETE FROM event WHERE id <= ? AND cfg = ?", (part_events[-1][0], span)
                )
            stored = zlib.compress(built.body, 1)  # level 1: most of the gain, least CPU
            coding = CODING_DEFLATE if len(stored) < len(built.body) else CODING_RAW
            self.conn.execute(
                "INSERT INTO outbox (seq, digest, body, readings, oldest_ts_ms, cut_ms, events, "
                "coding) VALUES (?,?,?,?,?,?,?,?)",
                (
                    seq,
                    digest,
                    stored if coding == CODING_DEFLATE else built.body,
                    built.readings,
                    built.oldest_ts_ms,
                    _now_ms(),
                    built.events,
                    coding,
                ),
            )
            self._set("head_seq", seq)
            self._set("head_digest", digest)
            for name in _COUNTERS:
                self._set(f"pending_{name}", 0)
            if built.rejected or built.events_rejected:
                self._add_counter("rejected_events", built.events_rejected)
                self._add_rejected(built.reasons, refused=False)
            self.depth -= built.rejected
            self.events_held -= built.events_rejected
            if fast:  # after the counters went into this batch: an eviction rides the next
                self._bound()
        for reason, n in built.reasons.items():
            if reason not in self._set_aside_logged:  # once per reason and run: counted anyway
                self._set_aside_logged.add(reason)
                log.warning(
                    "batch %d: %d buffered reading(s)/event(s) set aside, not sent (%s); "
                    "counted as rejected_invalid",
                    seq,
                    n,
                    reason,
                )
        return OutboxEntry(
            seq, digest, built.body, built.readings, built.oldest_ts_ms, built.events
        )

    def ack(self, seq: int, *, now_ms: int) -> int:
        """The receiver has batch `seq`: forget it (invariant 3). Returns its reading count.

        The row is deleted by the next transaction; until then the batch is gone from every
        query here."""
        if seq in self._acked:
            return 0
        row = self._query("SELECT readings, events FROM outbox WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return 0
        readings, events = int(row[0]), int(row[1])
        self._acked[seq] = (readings, events, now_ms)
        self.depth -= readings
        self.events_held -= events
        if not self.chain_confirmed:  # invariant 6: the chain is ours from now on, durably
            with self._transaction():
                pass  # the transaction applies the ack
        return readings

    def _apply_acks(self) -> None:
        """Inside a transaction: delete the acknowledged batches and count them (invariant 3)."""
        acked = self._acked
        self.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in acked])
        self._add_counter("acked_readings", sum(r for r, _e, _t in acked.values()))
        self._add_counter("acked_events", sum(e for _r, e, _t in acked.values()))
        self._add_counter("acked_batches", len(acked))
        self._set("last_sync_ms", max(t for _r, _e, t in acked.values()))
        if not self.chain_confirmed:
            self._set("chain_confirmed", 1)

    def _unacked(self) -> str:
        """A WHERE clause on `outbox` leaving out the batches acknowledged in memory only."""
        return f"seq NOT IN ({','.join(str(int(s)) for s in self._acked)})" if self._acked else "1"

    def adopt_head(self, seq: int, digest: bytes) -> None:
        """Continue the chain from the receiver's head (invariant 6); only with an empty outbox."""
        with self._transaction():
            if self.conn.execute("SELECT 1 FROM outbox LIMIT 1").fetchone():
                raise StoreError(
                    "cannot adopt the receiver's chain head with batches in the outbox"
                )
            self._set("head_seq", seq)
            self._set("head_digest", digest)
            self._set("chain_confirmed", 1)

    @property
    def chain_confirmed(self) -> bool:
        return bool(self.meta.get("chain_confirmed", 0))

    def set_meta(self, **values: Any) -> None:
        """Persist status fields (uplink state, last error, clock), for `edge-agent status`."""
        changed = {k: v for k, v in values.items() if self.meta.get(k) != v}
        if changed:
            with self._transaction():
                for k, v in changed.items():
                    self._set(k, v)

    def oldest_ts_ms(self) -> int | None:
        sql = f"SELECT min(oldest_ts_ms) FROM outbox WHERE {self._unacked()}"  # noqa: S608
        out = self._query(sql).fetchone()[0]
        first = self._query("SELECT ts_ms FROM reading ORDER BY id LIMIT 1").fetchone()
        event = self._query("SELECT ts_ms FROM event ORDER BY id LIMIT 1").fetchone()
        values = [v for v in (out, first and first[0], event and event[0]) if v is not None]
        values += [r.rows[0][1] for r in self._pending[:1] if r.rows]
        values += [e[1] for r in self._pending for e in r.events[:1]]
        return min(values) if values else None

    def last_values(self) -> dict[int, tuple[int, float]]:
        """The newest (ts_ms, value) committed per series, across restarts (invariant 8)."""
        return dict(self.last)

    def clock_floor_ms(self) -> int:
        """The newest timestamp this buffer ever committed: time cannot be earlier than that."""
        return max((ts for ts, _v in self.last.values()), default=0)

    def next_epoch_id(self) -> int:
        return int(self._query("SELECT coalesce(max(id), 0) + 1 FROM epoch").fetchone()[0])

    def close(self) -> None:
        # what a failure leaves stays in the journal, replayed on open
        with contextlib.suppress(StoreError), self._transaction():
            self._merge()
            self._write_last(self.last)  # the newest values back in the table (invariant 8)
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.close_files()

    def close_files(self) -> None:
        """Close the database and the journal as they are (no merge, no checkpoint)."""
        self.conn.close()
        if self.journal is not None:
            self.journal.close()
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    # -- plumbing ---------------------------------------------------------------------------

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


def stored_body(body: bytes, coding: int) -> bytes:
    """A batch body as sent, from an outbox row's `body` and `coding` (invariant 2). ValueError
    for a coding this agent does not know (a newer agent's file) or a body that does not
    inflate."""
    if coding == CODING_RAW:
        return bytes(body)
    if coding != CODING_DEFLATE:
        raise ValueError(f"unknown outbox coding {coding} (written by a newer agent?)")
    try:
        return zlib.decompress(body)
    except zlib.error as exc:
        raise ValueError(f"stored body does not inflate: {exc}") from exc


def newest_values(rows: Sequence[NewRow]) -> dict[int, tuple[int, float]]:
    """Each series' last (ts_ms, value) in `rows`. Runs once per commit over every row, so the
    per-row part is C (dict keeps the last row of each key): no tuple a row."""
    return {
        sid: (row[1], row[2])
        for sid, row in dict(zip(map(_SERIES_ID, rows), rows, strict=True)).items()
    }


_SERIES_ID = operator.itemgetter(0)


def _span_runs(records: Sequence[Record]) -> list[tuple[int, list[Record]]]:
    """`records` cut into runs of consecutive records of one config span, in order."""
    return [(cfg, list(run)) for cfg, run in itertools.groupby(records, key=lambda r: r.cfg)]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sql_uid(uid: int) -> int:
    """An MCU's u64 uid as SQLite's signed 64-bit integer (same bits)."""
    return uid - (1 << 64) if uid >= 1 << 63 else uid


def _mcu_uid(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def open_buffer(path: str | Path, *, max_bytes: int, kernel_boot_id: str) -> Buffer:
    """Open (or create) the buffer; a damaged file is moved aside and a fresh one started."""
    p = Path(path)
    try:
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{p.parent}: cannot create the buffer directory: {exc.strerror}") from exc
    lock_fd = _lock(p)
    try:
        buf = _open_or_replace(p, max_bytes, kernel_boot_id)
    except BaseException:
        os.close(lock_fd)
        raise
    buf.lock_fd = lock_fd
    return buf


def _open_or_replace(p: Path, max_bytes: int, kernel_boot_id: str) -> Buffer:
    try:
        return _open(p, max_bytes, kernel_boot_id)
    except StoreDamagedError as exc:
        damage = _move_aside(p, str(exc))
    buf = _open(p, max_bytes, kernel_boot_id)
    buf.damage = damage
    with buf._transaction():
        buf._set("damage", f"{damage.reason}; moved to {damage.moved_to}")
        buf._add_counter("dropped_damaged", damage.readings_lost, pending=True)
    log.error(
        "buffer %s was damaged (%s): moved to %s, starting fresh; %d readings lost",
        p,
        damage.reason,
        damage.moved_to,
        damage.readings_lost,
    )
    return buf


def _lock(p: Path) -> int:
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


def _open(p: Path, max_bytes: int, kernel_boot_id: str) -> Buffer:
    old_umask = os.umask(0o077)  # the buffer holds plant data: owner only
    try:
        conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False, timeout=10.0)
    except sqlite3.Error as exc:
        raise StoreError(f"{p}: cannot open: {exc}") from exc
    finally:
        os.umask(old_umask)
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only; kept by an old one
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{p}: cannot switch to WAL mode (got {mode})")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreDamagedError(f"quick_check: {check}")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA journal_size_limit=4194304")  # trim the WAL after checkpoints
        conn.executescript(_SCHEMA)
        for table in _CFG_COLUMNS:
            if "cfg" not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN cfg INTEGER NOT NULL DEFAULT 0")
        if "coding" not in {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}:
            conn.execute("ALTER TABLE outbox ADD COLUMN coding INTEGER NOT NULL DEFAULT 0")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", 0))
        if version == 1:  # the tables of 2 exist by now (IF NOT EXISTS); the outbox needs a column
            columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            if "events" not in columns:
                conn.execute("ALTER TABLE outbox ADD COLUMN events INTEGER NOT NULL DEFAULT 0")
        if version in (0, 1):
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
            meta["schema_version"] = SCHEMA_VERSION
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{p}: schema version {version}, this agent knows {SCHEMA_VERSION}")
        last = {
            sid: (ts, value)
            for sid, ts, value in conn.execute(
                "SELECT id, last_ts_ms, last_value FROM series WHERE last_ts_ms IS NOT NULL"
            )
        }
        series = {
            row[0]: SeriesKey(*row[1:])
            for row in conn.execute(
                "SELECT id, metric, unit, site, area, process, medium FROM series"
            )
        }
        deltas = dict(conn.execute("SELECT id, delta_ms FROM epoch WHERE delta_ms IS NOT NULL"))
        depth = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
        depth += conn.execute("SELECT coalesce(sum(readings), 0) FROM outbox").fetchone()[0]
        events_held = conn.execute("SELECT count(*) FROM event").fetchone()[0]
        events_held += conn.execute("SELECT coalesce(sum(events), 0) FROM outbox").fetchone()[0]
        positions = {
            _mcu_uid(uid): (boot, seq)
            for uid, boot, seq in conn.execute("SELECT uid, boot, seq FROM mcu_position")
        }
        states = {
            str(name): bytes(value)
            for name, value in conn.execute("SELECT name, value FROM source_state")
        }
        spans = {int(i): str(v) for i, v in conn.execute("SELECT id, version FROM config_span")}
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.Error as exc:
        conn.close()
        # Only "not a database" and "malformed" mean damage; busy, locked, I/O and permission
        # errors are the machine's problem, and moving the file aside would lose good data.
        if getattr(exc, "sqlite_errorcode", None) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            raise StoreDamagedError(str(exc)) from exc
        raise StoreError(f"{p}: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    buf = Buffer(
        conn=conn,
        path=str(p),
        max_bytes=max_bytes,
        kernel_boot_id=kernel_boot_id,
        series=series,
        deltas=deltas,
        meta=meta,
        depth=depth,
        events_held=events_held,
        positions=positions,
        states=states,
        spans=spans,
        cfg=int(meta.get("config_span", 0)),
        last=last,
        _page_size=page_size,
        _journal_seq=int(meta.get("journal_merged_seq", 0)),
    )
    journal = Path(f"{p}{JOURNAL_SUFFIX}")
    if version == 0 and journal.exists() and journal.stat().st_size:
        # A new file beside an old journal (buffer.db deleted by hand): its records name series
        # this file does not have. Kept for inspection, not replayed.
        target = journal.with_name(f"{journal.name}.orphaned-{int(time.time())}")
        try:
            journal.rename(target)
        except OSError as exc:
            buf.close_files()
            raise StoreError(
                f"{journal}: cannot move the old journal aside: {exc.strerror}"
            ) from exc
        log.error("%s: the buffer file is new; its old journal was moved to %s", p, target)
    try:
        buf.replay_journal(journal)
    except BaseException:
        buf.close_files()
        raise
    return buf


def _move_aside(p: Path, reason: str) -> Damage:
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
    lost = _count_lost(target)
    with contextlib.suppress(StoreError):  # its records count too (twice, if merged: see below)
        lost += readings_after(Path(f"{target}{JOURNAL_SUFFIX}"), 0)
    return Damage(str(target), lost, reason)


def _count_lost(target: Path) -> int:
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
