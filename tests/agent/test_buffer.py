"""The buffer's invariants, one test (or more) each; numbers refer to agent/buffer.py."""

from __future__ import annotations

import logging
import math
import sqlite3

import pytest

from agent.buffer import open_buffer
from agent.clock import EPOCH_SHIFT, Epoch, Reference
from agent.errors import StoreError, UnreadableBatchError
from tests.agent.helpers import (
    BOOT,
    T0,
    cut,
    damage_outbox_body,
    decode,
    key,
    open_test_buffer,
    values_of,
)
from wire.codec import batch_digest
from wire.models import GENESIS, TIME_UNTRUSTED, Counters, Event, SeriesKey


def fill(buf, n, *, series=2, start=0, quality=0):
    new = [(i + 1, key(i + 1)) for i in range(series) if i + 1 not in buf.series]
    rows = [
        ((j % series) + 1, T0 + 1000 * (start + j), float(start + j), quality) for j in range(n)
    ]
    return buf.commit(rows, new_series=new)


def test_cut_freezes_oldest_readings_with_seq_and_chain(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    fill(buf, 10)
    first = cut(buf, max_readings=4)
    assert first is not None
    assert first.seq == 1
    assert first.readings == 4
    b1 = decode(first.body)
    assert b1.prev == GENESIS
    assert [v for _m, _t, v, _q in values_of(b1)] == [0.0, 2.0, 1.0, 3.0]  # per series, oldest
    second = cut(buf, max_readings=100)
    assert second is not None
    assert second.seq == 2
    assert second.readings == 6
    assert decode(second.body).prev == batch_digest(first.body) == first.digest
    assert cut(buf) is None  # nothing left, nothing to report
    assert buf.depth == 10  # frozen batches still count until acknowledged


def test_retry_after_reopen_sends_identical_bytes(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    fill(buf, 50)
    entry = cut(buf)
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")
    head = again.outbox_head()
    assert head is not None
    assert (head.seq, head.body, head.digest) == (entry.seq, entry.body, entry.digest)
    assert again.depth == 50


def test_rows_leave_only_after_ack(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    fill(buf, 20)
    entry = cut(buf)
    assert buf.outbox_head() is not None
    assert buf.ack(entry.seq, now_ms=T0) == 20
    assert buf.outbox_head() is None
    assert buf.depth == 0
    assert buf.ack(entry.seq, now_ms=T0) == 0  # a repeated ack is harmless
    assert buf.meta["total_acked_readings"] == 20
    assert buf.chain_confirmed


def test_an_ack_rides_the_next_transaction_and_a_crash_before_it_resends_the_same_bytes(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    fill(buf, 20)
    buf.ack(cut(buf).seq, now_ms=T0)  # confirms the chain: written at once (invariant 6)
    fill(buf, 20, start=20)
    second = cut(buf)
    assert buf.ack(second.seq, now_ms=T0 + 1) == 20
    assert (buf.outbox_head(), buf.outbox_batches(), buf.depth, buf.uncut()) == (None, 0, 0, 0)
    assert buf.ack(second.seq, now_ms=T0 + 1) == 0
    buf.close_files()  # kill -9 before any other transaction: the delete never reached the file

    again = open_test_buffer(tmp_path / "b.db")
    head = again.outbox_head()
    assert head is not None
    assert (head.seq, head.body) == (second.seq, second.body)  # the receiver answers "duplicate"
    assert again.ack(second.seq, now_ms=T0 + 2) == 20
    fill(again, 10, start=40)
    third = cut(again)  # its transaction deletes the acknowledged batch
    assert third.seq == second.seq + 1
    assert decode(third.body).prev == second.digest
    again.close_files()

    last = open_test_buffer(tmp_path / "b.db")
    assert (last_head := last.outbox_head()) is not None
    assert last_head.seq == third.seq
    assert last.depth == 10
    assert last.meta["total_acked_readings"] == 40
    assert last.meta["last_sync_ms"] == T0 + 2


def test_bodies_are_stored_deflated_and_sent_as_cut(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    fill(buf, 500, series=50)
    entry = cut(buf)
    stored, coding = buf.conn.execute("SELECT body, coding FROM outbox").fetchone()
    assert coding == 1
    assert len(stored) < len(entry.body) / 4  # meter data: the cut writes a fraction of the body
    assert batch_digest(entry.body) == entry.digest
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")
    head = again.outbox_head()
    assert head is not None
    assert (head.body, head.digest) == (entry.body, entry.digest)
    # a row stored raw (by an older agent) is sent as it is; one from a newer agent is refused
    again.conn.execute("UPDATE outbox SET body = ?, coding = 0", (entry.body,))
    assert (raw := again.outbox_head()) is not None
    assert raw.body == entry.body
    again.conn.execute("UPDATE outbox SET coding = 7")
    with pytest.raises(StoreError, match="unknown outbox coding 7"):
        again.outbox_head()
    again.close()


def test_full_buffer_drops_oldest_counts_exactly_and_reports_once(tmp_path):
    bound = 256 * 1024
    buf = open_test_buffer(tmp_path / "b.db", max_bytes=bound)
    made = dropped = 0
    for round_ in range(40):
        result = fill(buf, 1000, start=made)
        made += 1000
        dropped += result.dropped
        assert buf.used_bytes() <= bound
        del round_
    assert dropped > 0
    assert buf.meta["total_dropped_buffer_full"] == dropped
    assert buf.depth == made - dropped
    held = sorted(r[0] for r in buf.conn.execute("SELECT value FROM reading"))
    assert held == [float(v) for v in range(dropped, made)]  # exactly the oldest went
    entry = cut(buf, max_readings=10)
    assert decode(entry.body).counters == Counters(dropped_buffer_full=dropped)
    buf.ack(entry.seq, now_ms=T0)
    assert decode(cut(buf, max_readings=10).body).counters == Counters()  # reported once


def test_frozen_batches_are_never_dropped(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db", max_bytes=128 * 1024)
    fill(buf, 2000)
    entry = cut(buf, max_readings=2000)
    for i in range(20):
        fill(buf, 1000, start=2000 + 1000 * i)
    head = buf.outbox_head()
    assert head is not None
    assert head.body == entry.body


def test_invalid_readings_are_counted_not_sent(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit(
        [(1, T0, 1.0, 0), (1, T0 + 1, math.nan, 0), (1, 5, 2.0, 0), (1, T0 + 2, 3.0, 99)],
        new_series=[(1, key(1))],
    )
    batch = decode(cut(buf).body)
    assert [v for _m, _t, v, _q in values_of(batch)] == [1.0]
    assert batch.counters.rejected_invalid == 3
    assert buf.depth == 1
    assert buf.meta["total_rejected_invalid"] == 3


def test_rows_of_a_series_the_contract_refuses_are_set_aside_and_the_rest_flows(tmp_path, caplog):
    # A buffer written before the ingest checked keys: a NUL byte inside a unit (MT-SICS line
    # noise). Before, every cut failed: "cannot encode batch 1: series[1].unit: contains
    # control characters", and the agent exited with code 4 on every start.
    buf = open_test_buffer(tmp_path / "b.db")
    bad = SeriesKey("weight", "11835\x00kg")
    buf.commit(
        [(1, T0, 1.0, 0), (2, T0, 11835.0, 1), (1, T0 + 1, 2.0, 0), (2, T0 + 1, 5.0, 1)],
        new_series=[(1, key(1)), (2, bad)],
        events=[Event("ticket", T0, (("lot", "L\x07"),)), Event("ticket", T0, (("lot", "L1"),))],
    )
    buf.close()
    buf = open_test_buffer(tmp_path / "b.db")
    with caplog.at_level(logging.WARNING, logger="agent.buffer"):
        first = cut(buf)
        buf.commit([(2, T0 + 2, 6.0, 1)])  # another one later: counted, logged no more
        second = cut(buf)
    batch = decode(first.body)
    assert [v for _m, _t, v, _q in values_of(batch)] == [1.0, 2.0]
    assert [e.attrs for e in batch.events] == [(("lot", "L1"),)]
    assert batch.counters.rejected_invalid == 3
    assert decode(second.body).counters.rejected_invalid == 1
    assert buf.uncut() == 0
    assert buf.meta["total_rejected_by_control_characters"] == 3
    assert buf.meta["total_rejected_by_bad_attr_value"] == 1
    assert "total_refused" not in buf.meta  # these were committed, then set aside
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # once per reason
    assert any("set aside" in line and "control_characters" in line for line in lines)


def test_refusals_at_the_ingest_reach_the_next_batch(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([], rejected_before={"control_characters": 2, "not_finite": 1})
    batch = decode(cut(buf).body)
    assert batch.counters.rejected_invalid == 3
    assert buf.meta["total_rejected_invalid"] == 3
    assert buf.meta["total_refused"] == 3
    assert buf.meta["total_rejected_by_not_finite"] == 1
    assert cut(buf) is None  # reported exactly once


def test_batch_is_halved_until_it_fits_max_bytes(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    rows = [(1, T0 + i, math.pi * i, 0) for i in range(4000)]  # raw floats: ~9 bytes each
    buf.commit(rows, new_series=[(1, key(1))])
    entry = cut(buf, max_bytes=8192)
    assert len(entry.body) <= 8192
    assert 0 < entry.readings < 4000
    assert buf.uncut() == 4000 - entry.readings


def test_newest_first_cut_takes_the_latest(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    fill(buf, 100, series=1)
    live = decode(cut(buf, max_readings=10, newest=True).body)
    assert [v for _m, _t, v, _q in values_of(live)] == [float(v) for v in range(99, 89, -1)]
    rest = decode(cut(buf).body)
    assert [v for _m, _t, v, _q in values_of(rest)] == [float(v) for v in range(90)]


def test_untrusted_epoch_is_corrected_only_for_this_kernel_boot(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    here = Epoch(1, BOOT, base_ms=T0, base_mono_ms=1000)
    other = Epoch(2, "another-boot", base_ms=T0, base_mono_ms=1000)
    flag1 = TIME_UNTRUSTED | (1 << EPOCH_SHIFT)
    flag2 = TIME_UNTRUSTED | (2 << EPOCH_SHIFT)
    buf.commit(
        [(1, T0 + 10, 1.0, flag1), (1, T0 + 20, 2.0, flag2 | 1)],
        new_series=[(1, key(1))],
        new_epochs=[here, other],
    )
    # The receiver says it is T0 + 60_000 when our monotonic clock reads 1500 ms: the epoch
    # base was really T0 + 59_500, so its timestamps move by +59_500.
    buf.commit([], references=[Reference(T0 + 60_000, 1500)])
    batch = decode(cut(buf).body)
    assert values_of(batch) == [("m1", T0 + 10 + 59_500, 1.0, 0), ("m1", T0 + 20, 2.0, 5)]


def test_correction_survives_reopen(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    flag = TIME_UNTRUSTED | (1 << EPOCH_SHIFT)
    buf.commit([(1, T0, 1.0, flag)], new_series=[(1, key(1))], new_epochs=[Epoch(1, BOOT, T0, 0)])
    buf.commit([], references=[Reference(T0 + 5, 0)])
    buf.close()
    buf = open_test_buffer(tmp_path / "b.db")
    assert values_of(decode(cut(buf).body)) == [("m1", T0 + 5, 1.0, 0)]
    assert buf.next_epoch_id() == 2


def test_adopt_head_continues_the_receivers_chain(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    assert not buf.chain_confirmed
    digest = bytes(range(32))
    buf.adopt_head(41, digest)
    fill(buf, 3)
    entry = cut(buf)
    assert entry.seq == 42
    assert decode(entry.body).prev == digest
    with pytest.raises(StoreError, match="with batches in the outbox"):
        buf.adopt_head(1, GENESIS)


def test_garbage_file_is_moved_aside_not_deleted(tmp_path):
    path = tmp_path / "b.db"
    path.write_bytes(b"this is not a database" * 100)
    buf = open_test_buffer(path)
    assert buf.damage is not None
    aside = [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_bytes() == b"this is not a database" * 100
    assert "moved to" in buf.meta["damage"]
    fill(buf, 5)
    assert buf.depth == 5  # a working fresh buffer
    assert not buf.chain_confirmed


def test_damaged_file_with_readable_parts_reports_what_was_lost(tmp_path):
    path = tmp_path / "b.db"
    buf = open_test_buffer(path)
    fill(buf, 3000)
    buf.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    raw[page * 3 : page * 4] = b"\xff" * page  # smash an interior page
    path.write_bytes(bytes(raw))
    buf = open_test_buffer(path)
    assert buf.damage is not None
    assert buf.depth == 0
    entry = cut(buf)
    lost = decode(entry.body).counters.dropped_damaged
    assert lost == buf.damage.readings_lost >= 3000  # never under-reported


def test_one_writer_only(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    with pytest.raises(StoreError, match="in use by another edge-agent"):
        open_test_buffer(tmp_path / "b.db")
    buf.close()
    open_test_buffer(tmp_path / "b.db").close()


def test_locked_database_is_not_mistaken_for_damage(tmp_path):
    path = tmp_path / "b.db"
    open_test_buffer(path).close()
    path.chmod(0o000)
    other = tmp_path / "sub"
    other.mkdir()
    # A directory where the file should be: cannot open, but nothing is moved aside.
    (other / "b.db").mkdir()
    with pytest.raises(StoreError):
        open_buffer(other / "b.db", max_bytes=1 << 20, kernel_boot_id=BOOT)
    assert not [p for p in other.iterdir() if ".damaged-" in p.name]


def test_file_and_directory_are_private(tmp_path):
    buf = open_test_buffer(tmp_path / "data" / "b.db")
    fill(buf, 1)
    assert (tmp_path / "data").stat().st_mode & 0o077 == 0
    assert (tmp_path / "data" / "b.db").stat().st_mode & 0o077 == 0


def test_group_commit_is_one_transaction(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([], new_series=[(1, key(1))])
    changes = buf.conn.total_changes
    buf.commit([(1, T0 + i, float(i), 0) for i in range(500)])
    # 500 inserts + 1 series update + meta writes, all inside one BEGIN ... COMMIT
    assert buf.conn.total_changes - changes < 510
    conn = sqlite3.connect(tmp_path / "b.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_source_state_is_committed_with_its_readings_and_read_at_open(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([(1, T0, 1.0, 0)], new_series=[(1, key(1))], states={"mq": b"record-1"})
    buf.commit([], states={"mq": b"record-2", "other": b"x"})
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")
    assert again.states == {"mq": b"record-2", "other": b"x"}
    again.close()


def test_a_failed_commit_leaves_the_state_with_the_readings_it_covers(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([(1, T0, 1.0, 0)], new_series=[(1, key(1))], states={"mq": b"one"})
    with pytest.raises(StoreError):  # series 1 exists already: the whole group fails
        buf.commit([(1, T0, 2.0, 0)], new_series=[(1, key(1))], states={"mq": b"two"})
    assert buf.states == {"mq": b"one"}
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")
    assert again.states == {"mq": b"one"}
    assert again.uncut() == 1
    again.close()


# -- found in review of the deferred ack and the deflated bodies ------------------------------


def _fill(buf, n, start=0):
    buf.commit(
        [(1, T0 + 1000 * i, float(i), 0) for i in range(start, start + n)],
        new_series=[] if 1 in buf.series else [(1, key(1))],
    )


def test_last_sync_ms_is_current_right_after_a_deferred_ack(tmp_path):
    """Status, health and a config push's window read `last_sync_ms` at once, not one cut
    later when the ack's delete is written."""
    buf = open_test_buffer(tmp_path / "b.db")
    _fill(buf, 10)
    buf.ack(cut(buf).seq, now_ms=T0)  # first ack: unconfirmed chain, written at once
    _fill(buf, 10, start=10)
    buf.ack(cut(buf).seq, now_ms=T0 + 5000)  # deferred
    assert buf.meta.get("last_sync_ms") == T0 + 5000
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")  # and a clean close writes it
    assert again.meta.get("last_sync_ms") == T0 + 5000
    again.close()


@pytest.mark.parametrize("raw", [False, True])
def test_a_damaged_stored_body_is_named_not_sent(tmp_path, raw):
    """A deflated body that no longer inflates, or a raw one that no longer matches its digest:
    an UnreadableBatchError naming the file and the batch, every time it is read."""
    buf = open_test_buffer(tmp_path / "b.db")
    _fill(buf, 500)
    entry = cut(buf)
    buf.close()
    damage_outbox_body(tmp_path / "b.db", raw=raw)
    again = open_test_buffer(tmp_path / "b.db")  # opens fine: the structure is intact
    for _ in range(2):
        with pytest.raises(UnreadableBatchError, match=rf"b\.db: batch {entry.seq}: stored body"):
            again.outbox_head()
    again.close()
