"""The append journal (agent/journal.py): its framing against torn and corrupt tails, fed at every
byte, and the buffer's use of it across crashes (replay, skip of merged records, torn tails)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from agent.journal import JOURNAL_SUFFIX, Record, decode_journal, encode_record, readings_after
from tests.agent.helpers import T0, cut, decode, key, open_test_buffer, values_of
from wire.models import Event

RECORDS = [
    Record(seq=1, rows=[(1, T0, 1.0, 0), (2, T0, 2.0, 0)]),
    Record(seq=2, events=[("ticket", T0, 0, b"\x90")], positions={7: (1, 5), 8: None}),
    Record(seq=3, rows=[(1, T0 + 1000, float("nan"), 4)], states={"mq": b"s1"}, dropped_before=2),
]


def stream() -> tuple[bytes, list[int]]:
    frames = [encode_record(r) for r in RECORDS]
    ends = [sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))]
    return b"".join(frames), ends


def test_records_round_trip():
    data, ends = stream()
    out = decode_journal(data)
    assert out.problem is None
    assert out.good_bytes == ends[-1] == len(data)
    assert [r.seq for r in out.records] == [1, 2, 3]
    assert out.records[1] == RECORDS[1]
    assert out.records[2].states == {"mq": b"s1"}


def test_a_tail_torn_at_every_byte_keeps_every_whole_record_before_it():
    data, ends = stream()
    for cut_at in range(len(data) + 1):
        out = decode_journal(data[:cut_at])
        whole = [e for e in ends if e <= cut_at]
        assert [r.seq for r in out.records] == list(range(1, len(whole) + 1)), cut_at
        assert out.good_bytes == (whole[-1] if whole else 0)
        assert (out.problem is None) == (cut_at in (0, *ends)), cut_at


def test_a_flipped_byte_in_the_last_record_keeps_the_ones_before():
    data, ends = stream()
    for pos in range(ends[1], len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x40
        out = decode_journal(bytes(bad))
        assert [r.seq for r in out.records] == [1, 2], pos
        assert out.good_bytes == ends[1]
        assert out.problem is not None


def test_zeroed_blocks_after_the_records_are_a_bad_tail_not_records():
    data, ends = stream()
    out = decode_journal(data + bytes(4096))
    assert [r.seq for r in out.records] == [1, 2, 3]
    assert out.good_bytes == ends[-1]
    assert out.problem is not None
    assert "checksum" in out.problem


def rows(start, n):
    return [(1, T0 + 1000 * k, float(k), 0) for k in range(start, start + n)]


def sent_values(buf):
    values = []
    while (entry := buf.outbox_head() or cut(buf)) is not None:
        values += [v for _m, _t, v, _q in values_of(decode(entry.body))]
        buf.ack(entry.seq, now_ms=T0)
    return values


def crash(buf):
    """What kill -9 leaves: the files as they are, no merge, no checkpoint."""
    buf.close_files()
    if buf.lock_fd >= 0:
        os.close(buf.lock_fd)
        buf.lock_fd = -1


def test_plain_commits_go_to_the_journal_and_a_crash_replays_them(tmp_path):
    db = tmp_path / "b.db"
    buf = open_test_buffer(db)
    buf.commit(rows(1, 5), new_series=[(1, key(1))])  # a new series: straight to the tables
    buf.commit(rows(6, 5), positions={9: (1, 10)}, states={"mq": b"a"})
    buf.commit(rows(11, 5), positions={9: (1, 15)}, states={"mq": b"b"})
    assert buf.conn.execute("SELECT count(*) FROM reading").fetchone()[0] == 5
    assert readings_after(tmp_path / f"b.db{JOURNAL_SUFFIX}", 0) == 10
    assert buf.uncut() == 15
    assert buf.last_values()[1] == (T0 + 15_000, 15.0)
    crash(buf)
    buf = open_test_buffer(db)
    merged = buf.meta["journal_merged_seq"]
    assert readings_after(tmp_path / f"b.db{JOURNAL_SUFFIX}", merged) == 0  # merged on open
    assert buf.positions == {9: (1, 15)}
    assert buf.states == {"mq": b"b"}
    assert buf.last_values()[1] == (T0 + 15_000, 15.0)
    assert buf.meta["total_committed"] == 15
    assert sent_values(buf) == [float(v) for v in range(1, 16)]
    buf.close()


def test_a_torn_journal_tail_is_dropped_with_a_warning_and_the_rest_kept(tmp_path, caplog):
    db = tmp_path / "b.db"
    journal = tmp_path / f"b.db{JOURNAL_SUFFIX}"
    buf = open_test_buffer(db)
    buf.commit([], new_series=[(1, key(1))])
    buf.commit(rows(1, 5))
    good = journal.stat().st_size
    buf.commit(rows(6, 5))
    crash(buf)
    with journal.open("r+b") as f:  # the second append cut short by a power loss
        f.truncate(good + 7)
    with caplog.at_level(logging.WARNING, logger="agent.buffer"):
        buf = open_test_buffer(db)
    assert "torn record" in caplog.text
    buf.commit(rows(6, 5))  # appended after the good records, not after the garbage
    crash(buf)
    buf = open_test_buffer(db)
    assert sent_values(buf) == [float(v) for v in range(1, 11)]
    buf.close()


@pytest.mark.parametrize("reset_bytes", [0, 1 << 20])
def test_merged_records_left_in_the_journal_are_never_replayed(tmp_path, reset_bytes):
    """Kept on purpose (under the reset size), or left by a crash before the reset."""
    db = tmp_path / "b.db"
    journal = tmp_path / f"b.db{JOURNAL_SUFFIX}"
    buf = open_test_buffer(db)
    buf.journal_reset_bytes = reset_bytes
    buf.commit([], new_series=[(1, key(1))])
    buf.commit(rows(1, 5))
    buf.commit(rows(6, 5))
    stale = journal.read_bytes()
    first = cut(buf, max_readings=3)  # merges: the other 7 rows go to the table
    assert first is not None
    assert first.readings == 3
    left = decode_journal(journal.read_bytes()).records
    if reset_bytes:
        assert [r.seq for r in left] == [1, 2]
    else:
        assert left == [Record(seq=2, rows=[(1, T0 + 10_000, 10.0, 0)])]  # the base record
    crash(buf)
    journal.write_bytes(stale)  # as if the reset never reached the disk
    buf = open_test_buffer(db)
    assert buf.uncut() == 7
    assert sent_values(buf) == [float(v) for v in range(1, 11)]
    assert buf.meta["total_committed"] == 10
    buf.close()


def test_a_record_older_than_the_one_before_ends_the_journal():
    """A reset cut short can leave whole old records after the base record."""
    base = encode_record(Record(seq=5, rows=[(1, T0 + 9000, 9.0, 0)]))
    old = encode_record(Record(seq=3, rows=[(1, T0 + 3000, 3.0, 0)]))
    out = decode_journal(base + old)
    assert [r.seq for r in out.records] == [5]
    assert out.good_bytes == len(base)
    assert out.problem is not None
    assert "stale" in out.problem


@pytest.mark.parametrize("max_readings", [3, 5, 8, 20])
def test_a_cut_takes_table_rows_then_journal_rows_in_order(tmp_path, max_readings):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit(rows(1, 4), new_series=[(1, key(1))])  # in the table
    buf.commit(rows(5, 4))  # in the journal
    values = []
    while (entry := cut(buf, max_readings=max_readings)) is not None:
        values += [v for _m, _t, v, _q in values_of(decode(entry.body))]
        buf.ack(entry.seq, now_ms=T0)
    assert values == [float(v) for v in range(1, 9)]
    assert buf.uncut() == 0
    assert buf.depth == 0
    buf.close()


def test_a_moved_aside_buffer_takes_its_journal_with_it(tmp_path):
    db = tmp_path / "b.db"
    buf = open_test_buffer(db)
    buf.commit([], new_series=[(1, key(1))])
    buf.commit(rows(1, 5))
    crash(buf)
    db.write_bytes(b"not a database" * 100)
    buf = open_test_buffer(db)
    assert buf.damage is not None
    assert buf.damage.readings_lost >= 5
    assert readings_after(Path(f"{buf.damage.moved_to}{JOURNAL_SUFFIX}"), 0) == 5
    buf.close()


def test_newest_values_survive_a_crash_after_cuts_that_left_the_series_table_behind(tmp_path):
    db = tmp_path / "b.db"
    buf = open_test_buffer(db)
    buf.commit(rows(1, 5), new_series=[(1, key(1)), (2, key(2))])
    buf.commit([(2, T0, 7.0, 0)])
    buf.commit(rows(6, 5))
    assert sent_values(buf) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 7.0]
    series = buf.conn.execute("SELECT id, last_value FROM series ORDER BY id").fetchall()
    assert series == [(1, 5.0), (2, None)]  # the cut's merge did not write them
    crash(buf)
    buf = open_test_buffer(db)
    assert buf.last_values() == {1: (T0 + 10_000, 10.0), 2: (T0, 7.0)}
    assert buf.clock_floor_ms() == T0 + 10_000
    buf.close()  # a clean stop writes them to the table
    conn = sqlite3.connect(db)
    series = conn.execute("SELECT id, last_value FROM series ORDER BY id").fetchall()
    conn.close()
    assert series == [(1, 10.0), (2, 7.0)]


def test_a_crash_inside_the_reset_leaves_the_base_record_and_a_dropped_tail(tmp_path):
    db = tmp_path / "b.db"
    journal = tmp_path / f"b.db{JOURNAL_SUFFIX}"
    buf = open_test_buffer(db)
    buf.journal_reset_bytes = 0
    buf.commit([], new_series=[(1, key(1))])
    for start in range(1, 40, 5):
        buf.commit(rows(start, 5))
    old = journal.read_bytes()
    assert cut(buf, max_readings=1000) is not None
    base = journal.read_bytes()
    crash(buf)
    journal.write_bytes(base + old[len(base) :])  # written over the start, not yet cut short
    buf = open_test_buffer(db)
    assert buf.last_values() == {1: (T0 + 40_000, 40.0)}
    assert buf.uncut() == 0
    buf.commit(rows(41, 2))
    assert sent_values(buf) == [float(v) for v in range(1, 43)]  # batch 1 was never acked
    buf.close()


def test_an_old_journal_beside_a_new_buffer_file_is_moved_aside_not_replayed(tmp_path, caplog):
    db = tmp_path / "b.db"
    buf = open_test_buffer(db)
    buf.commit([], new_series=[(1, key(1))])
    buf.commit(rows(1, 5))
    crash(buf)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # deleted by hand, the journal forgotten
    with caplog.at_level(logging.ERROR, logger="agent.buffer"):
        buf = open_test_buffer(db)
    assert "old journal was moved" in caplog.text
    assert buf.uncut() == 0
    orphans = list(tmp_path.glob(f"b.db{JOURNAL_SUFFIX}.orphaned-*"))
    assert len(orphans) == 1
    assert readings_after(orphans[0], 0) == 5
    buf.close()


def test_an_eviction_in_a_cut_that_takes_journal_rows_is_reported_in_the_next_batch(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([], new_series=[(1, key(1))])
    # not whole numbers: SQLite stores those in fewer bytes than the journal does
    buf.commit([(1, T0 + 1000 * k, k + 0.123456789 * k, 0) for k in range(1000)])
    assert buf.uncut() == 1000
    buf.max_bytes = buf.used_bytes() + buf._pending_bytes  # the journal's rows just fit
    first = cut(buf, max_readings=10)  # the 990 left go to the table, with the batch: too big
    assert first is not None
    assert decode(first.body).counters.dropped_buffer_full == 0
    buf.ack(first.seq, now_ms=T0)
    dropped = buf.meta["pending_dropped_buffer_full"]
    assert dropped > 0
    sent = 10
    reported = 0
    while (entry := cut(buf, max_readings=1000)) is not None:
        batch = decode(entry.body)
        sent += len(values_of(batch))
        reported += batch.counters.dropped_buffer_full
        buf.ack(entry.seq, now_ms=T0)
    assert reported == dropped
    assert sent + reported == 1000
    buf.close()


def test_status_counts_what_the_journal_holds(tmp_path):
    from agent.config import load_config
    from agent.status import read_status
    from tests.agent.helpers import write_config

    config = load_config(write_config(tmp_path, url="https://ingest.test"))
    buf = open_test_buffer(Path(config.buffer.path))
    buf.commit([], new_series=[(1, key(1))])
    buf.commit(rows(1, 5), events=[Event("ticket", T0, (("net_kg", 1),))])
    crash(buf)  # a killed agent: the journal holds the group
    status = read_status(config, now_ms=T0 + 10_000)
    assert status["buffer"]["readings"] == 5
    assert status["buffer"]["events"] == 1
    assert status["buffer"]["oldest_reading_age_s"] == 9.0
    assert status["readings_committed"] == 5


@pytest.mark.parametrize("reset_bytes", [0, 1 << 20])
def test_newest_values_survive_a_crash_after_a_direct_commit_behind_journal_records(
    tmp_path, reset_bytes
):
    """A commit that goes straight to the tables (here: a new series) writes its rows' newest
    values to the series table only; the journal still holds older records of those series
    (merged, or as the base record of the reset that merge did). A replay that let them
    overlay the table reported a stale newest value, and a counter source repeated values."""
    db = tmp_path / "b.db"
    buf = open_test_buffer(db)
    buf.journal_reset_bytes = reset_bytes
    buf.commit(rows(1, 5), new_series=[(1, key(1))])
    buf.commit(rows(6, 5))  # journaled
    buf.commit(rows(11, 5) + [(2, T0, 7.0, 0)], new_series=[(2, key(2))])  # direct
    assert buf.last_values() == {1: (T0 + 15_000, 15.0), 2: (T0, 7.0)}
    crash(buf)
    buf = open_test_buffer(db)
    assert buf.last_values() == {1: (T0 + 15_000, 15.0), 2: (T0, 7.0)}
    buf.commit(rows(16, 2))
    crash(buf)
    buf = open_test_buffer(db)
    assert buf.last_values() == {1: (T0 + 17_000, 17.0), 2: (T0, 7.0)}
    assert sorted(sent_values(buf)) == sorted([float(v) for v in range(1, 18)] + [7.0])
    buf.close()
