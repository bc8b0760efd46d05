"""The store-and-forward buffer: one SQLite file in WAL mode, one writer.

Tables: `reading` (uncut readings, oldest = lowest id), `event` (uncut events, likewise), `outbox`
(frozen batches: seq, digest, body, stored deflated when that is smaller: `coding`), `series`,
`epoch` (untrusted-clock stretches, see `agent.clock`), `mcu_position` (per MCU uid, the last
(boot, seq) committed; see `agent.watermarks`), `source_state` (per source, a small opaque record
committed with its readings: the MQTT source's redelivery record), `config_span` (the config
versions readings were taken under, invariant 7) and `meta` (chain head, loss counters, uplink
state).

Invariants (each kept by one method; the modules below say which):
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

Where they live: `agent.buffer_state` (the fields, transactions, `meta`), `agent.buffer_commit`
(readings in, the journal merge, the bound), `agent.buffer_outbox` (cuts, acks, the chain head),
`agent.buffer_file` (schema, lock, damage), and here `Buffer`, which is all of them, and
`open_buffer`. Import from here.

Not thread-safe; the runtime calls it from one worker thread. sqlite3 errors are translated to
StoreError in these modules and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

from agent.buffer_commit import JOURNAL_MAX_GROUP
from agent.buffer_file import (
    CFG_COLUMNS,
    PAGE_SIZE,
    SCHEMA,
    SCHEMA_VERSION,
    SQLITE_CORRUPT,
    SQLITE_NOTADB,
    Damage,
    lock_file,
    move_aside,
)
from agent.buffer_outbox import CODING_DEFLATE, CODING_RAW, BufferOutbox, stored_body
from agent.buffer_state import (
    JOURNAL_MAX_BYTES,
    JOURNAL_RESET_BYTES,
    CommitResult,
    NewRow,
    OutboxEntry,
    Position,
    mcu_uid,
    newest_values,
)
from agent.errors import StoreDamagedError, StoreError
from agent.journal import (
    JOURNAL_SUFFIX,
)
from wire.models import SeriesKey

__all__ = [
    "CODING_DEFLATE",
    "CODING_RAW",
    "JOURNAL_MAX_BYTES",
    "JOURNAL_MAX_GROUP",
    "JOURNAL_RESET_BYTES",
    "PAGE_SIZE",
    "SCHEMA_VERSION",
    "Buffer",
    "CommitResult",
    "Damage",
    "NewRow",
    "OutboxEntry",
    "Position",
    "newest_values",
    "open_buffer",
    "stored_body",
]

log = logging.getLogger(__name__)


class Buffer(BufferOutbox):
    """An open buffer file. Build it with `open_buffer`."""

    __slots__ = ()

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


def open_buffer(path: str | Path, *, max_bytes: int, kernel_boot_id: str) -> Buffer:
    """Open (or create) the buffer; a damaged file is moved aside and a fresh one started."""
    p = Path(path)
    try:
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{p.parent}: cannot create the buffer directory: {exc.strerror}") from exc
    lock_fd = lock_file(p)
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
        damage = move_aside(p, str(exc))
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
        conn.executescript(SCHEMA)
        for table in CFG_COLUMNS:
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
            mcu_uid(uid): (boot, seq)
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
        if getattr(exc, "sqlite_errorcode", None) in (SQLITE_CORRUPT, SQLITE_NOTADB):
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
