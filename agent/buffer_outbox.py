"""Batches out: cutting frozen batches into the outbox, acknowledgements and the chain head
(`agent.buffer` invariants 2, 3, 6), and how a body is stored.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from typing import Any

from agent.batcher import EventRow, Row, build_body
from agent.buffer_commit import BufferCommits
from agent.buffer_state import OutboxEntry
from agent.errors import StoreError, UnreadableBatchError
from wire.codec import MAX_EVENTS, batch_digest
from wire.errors import EncodeError
from wire.models import GENESIS, ClockReport, Counters

# One logger for the whole buffer, whichever of its modules logs: operators filter on it.
log = logging.getLogger("agent.buffer")

# outbox.coding (invariant 2): how `body` is stored; added like cfg, DEFAULT 0 for older rows
CODING_RAW, CODING_DEFLATE = 0, 1
_COUNTERS = ("dropped_buffer_full", "dropped_damaged", "rejected_invalid")


class BufferOutbox(BufferCommits):
    """Frozen batches: cut, offered, acknowledged (invariants 2, 3, 6)."""

    __slots__ = ()

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
            raise UnreadableBatchError(f"{self.path}: batch {seq}: {exc}") from exc
        if batch_digest(body) != bytes(digest):  # damage SQLite's checks do not see
            raise UnreadableBatchError(
                f"{self.path}: batch {seq}: stored body does not match its digest"
            )
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
        # status, health and a config push's health window read the last ack now, not at the
        # next transaction that writes it
        self.meta["last_sync_ms"] = max(int(self.meta.get("last_sync_ms", 0) or 0), now_ms)
        self.depth -= readings
        self.events_held -= events
        if not self.chain_confirmed:  # invariant 6: the chain is ours from now on, durably
            with self._transaction():
                pass  # the transaction applies the ack
        return readings

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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
