"""Events and MCU positions in the buffer: same commit, same batches, same bound, same acks."""

from __future__ import annotations

import math
import sqlite3

import pytest

from agent.buffer import SCHEMA_VERSION
from agent.clock import EPOCH_SHIFT, Epoch, Reference
from agent.errors import StoreError
from tests.agent.helpers import BOOT, T0, cut, decode, key, open_test_buffer
from wire.codec import batch_digest
from wire.models import TIME_UNTRUSTED, Counters, Event

TICKET = (("ticket", 1042), ("material", "GRAVEL"), ("net_kg", 25340.5), ("tared", True))


def ticket(n: int, *, ts: int | None = None, quality: int = 0) -> Event:
    return Event("weighbridge_ticket", T0 + n if ts is None else ts, (("n", n), *TICKET), quality)


def test_events_are_committed_cut_into_batches_and_acked(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    result = buf.commit([(1, T0, 1.0, 0)], new_series=[(1, key(1))], events=[ticket(1), ticket(2)])
    assert (result.committed, result.events) == (1, 2)
    assert buf.events_held == 2
    entry = cut(buf)
    assert entry.events == 2
    batch = decode(entry.body)
    assert batch.events == [ticket(1), ticket(2)]  # attribute types kept: int, str, float, bool
    assert batch.reading_count() == 1
    assert buf.conn.execute("SELECT count(*) FROM event").fetchone()[0] == 0  # in the body now
    assert buf.events_held == 2  # held until acknowledged
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")  # the count survives a restart
    assert again.events_held == 2
    head = again.outbox_head()
    assert head is not None
    assert head.events == 2
    again.ack(entry.seq, now_ms=T0)
    assert again.events_held == 0
    assert again.meta["total_acked_events"] == 2
    assert cut(again) is None


def test_events_alone_make_a_batch_in_order_and_a_cap_splits_them(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([], events=[ticket(i) for i in range(5)])
    first, second = cut(buf, max_readings=3), cut(buf, max_readings=3)
    assert [dict(e.attrs)["n"] for e in decode(first.body).events] == [0, 1, 2]
    assert [dict(e.attrs)["n"] for e in decode(second.body).events] == [3, 4]
    assert cut(buf) is None


def test_untrusted_event_time_is_corrected_like_readings(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    epoch = Epoch(3, BOOT, base_ms=T0, base_mono_ms=1000)
    flagged = TIME_UNTRUSTED | (3 << EPOCH_SHIFT)
    buf.commit([], new_epochs=[epoch], events=[ticket(1, ts=T0 + 50, quality=flagged)])
    buf.commit([], references=[Reference(ref_ms=T0 + 7000, ref_mono_ms=1000)])
    (event,) = decode(cut(buf).body).events
    assert (event.ts_ms, event.quality) == (T0 + 7050, 0)


def test_invalid_events_are_counted_not_sent(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    bad = [
        Event("", T0),  # no kind
        Event("x", 5),  # 1970
        Event("x", T0, (("v", math.nan),)),
        Event("x", T0, quality=99),
    ]
    buf.commit([], events=[ticket(1), *bad])
    batch = decode(cut(buf).body)
    assert batch.events == [ticket(1)]
    assert batch.counters.rejected_invalid == 4
    assert buf.events_held == 1
    assert buf.meta["total_rejected_events"] == 4


def test_events_count_in_the_bound_and_go_only_after_the_readings(tmp_path):
    bound = 128 * 1024
    buf = open_test_buffer(tmp_path / "b.db", max_bytes=bound)
    buf.commit([(1, T0 + i, float(i), 0) for i in range(200)], new_series=[(1, key(1))])
    dropped = 0
    for i in range(60):  # ~60 kB of events per round: they alone overflow the bound
        dropped += buf.commit([], events=[ticket(1000 * i + j) for j in range(500)]).dropped
        assert buf.used_bytes() <= bound
    held = buf.conn.execute("SELECT count(*) FROM event").fetchone()[0]
    assert buf.conn.execute("SELECT count(*) FROM reading").fetchone()[0] == 0  # readings first
    assert dropped == 200 + 30_000 - held
    assert buf.meta["total_evicted_events"] == 30_000 - held
    first = buf.conn.execute("SELECT min(id), max(id) FROM event").fetchone()
    assert first[1] - first[0] + 1 == held  # the newest events stayed, contiguous
    assert decode(cut(buf).body).counters == Counters(dropped_buffer_full=dropped)


def test_mcu_positions_commit_with_the_group_and_survive_reopen(tmp_path):
    big = (1 << 64) - 5  # a u64 uid above SQLite's signed range
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([(1, T0, 1.0, 0)], new_series=[(1, key(1))], positions={7: (1, 10), big: (2, 3)})
    buf.commit([], positions={7: (1, 20)})
    assert buf.positions == {7: (1, 20), big: (2, 3)}
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")
    assert again.positions == {7: (1, 20), big: (2, 3)}
    again.commit([], positions={big: None})  # forgotten (the MCU's history was reset)
    again.close()
    assert open_test_buffer(tmp_path / "b.db").positions == {7: (1, 20)}


def test_a_failed_commit_writes_neither_readings_nor_position(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([], new_series=[(1, key(1))])
    with pytest.raises(StoreError):
        # a series id that already exists: the transaction fails as a whole
        buf.commit([(1, T0, 1.0, 0)], new_series=[(1, key(1))], positions={7: (1, 1)})
    assert buf.positions == {}
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")
    assert again.positions == {}
    assert again.depth == 0


def test_a_schema_1_file_is_migrated(tmp_path):
    path = tmp_path / "b.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema_version', 1);
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY, digest BLOB NOT NULL, body BLOB NOT NULL,
            readings INTEGER NOT NULL, oldest_ts_ms INTEGER, cut_ms INTEGER NOT NULL);
        """
    )
    body = b"\x00"  # a body and its digest, as a schema-1 agent stored them
    conn.execute("INSERT INTO outbox VALUES (1, ?, ?, 5, NULL, 0)", (batch_digest(body), body))
    conn.commit()
    conn.close()
    buf = open_test_buffer(path)
    assert buf.meta["schema_version"] == SCHEMA_VERSION == 2
    assert (buf.depth, buf.events_held) == (5, 0)
    head = buf.outbox_head()
    assert head is not None
    assert (head.seq, head.readings, head.events) == (1, 5, 0)
