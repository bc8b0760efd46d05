"""Invariant 7 of agent/buffer.py: every batch names the config its readings were taken under,
also when they waited in the append journal (invariant 8)."""

from __future__ import annotations

import os
import sqlite3
import zlib
from pathlib import Path

import msgspec
import pytest

from agent.journal import JOURNAL_SUFFIX, decode_journal
from tests.agent.helpers import T0, cut, decode, journal_rows, key, open_test_buffer
from wire.models import Event


def commit(buf, n, *, start=0, events=0):
    new = [(1, key(1))] if 1 not in buf.series else []
    rows = [(1, T0 + 1000 * (start + j), float(start + j), 0) for j in range(n)]
    evs = [Event("ticket", T0 + 1000 * (start + j), (("lot", start + j),)) for j in range(events)]
    return buf.commit(rows, new_series=new, events=evs)


def drain(buf, **kw):
    """Every batch the buffer cuts until it holds nothing uncut: (version, values, event lots)."""
    out = []
    while (entry := cut(buf, **kw)) is not None:
        b = decode(entry.body)
        lots = [dict(e.attrs)["lot"] for e in b.events]
        out.append((b.config_version, [r.value for r in b.readings()], lots))
    return out


def test_readings_buffered_before_a_switch_keep_the_old_version(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.set_config_version("aaaa")
    commit(buf, 5, events=2)
    buf.set_config_version("bbbb")
    commit(buf, 3, start=5, events=1)
    batches = drain(buf)
    assert batches == [
        ("aaaa", [0.0, 1.0, 2.0, 3.0, 4.0], [0, 1]),
        ("bbbb", [5.0, 6.0, 7.0], [5]),
    ]


def test_the_version_and_the_spans_survive_a_restart(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.set_config_version("aaaa")
    commit(buf, 4)
    buf.close()
    again = open_test_buffer(tmp_path / "b.db")
    assert again.config_version == "aaaa"
    again.set_config_version("aaaa")  # the same config again: no new span
    assert len(again.spans) == 1
    again.set_config_version("bbbb")
    commit(again, 2, start=4)
    again.close()
    third = open_test_buffer(tmp_path / "b.db")
    assert drain(third, max_readings=3) == [
        ("aaaa", [0.0, 1.0, 2.0], []),
        ("aaaa", [3.0], []),
        ("bbbb", [4.0, 5.0], []),
    ]


def test_a_live_cut_takes_the_newest_config_and_leaves_older_events(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.set_config_version("aaaa")
    commit(buf, 4, events=1)
    buf.set_config_version("bbbb")
    commit(buf, 4, start=4, events=1)
    live = decode(cut(buf, max_readings=2, newest=True).body)
    assert (live.config_version, [r.value for r in live.readings()], live.events) == (
        "bbbb",
        [7.0, 6.0],  # a live batch holds the newest first
        [],
    )
    # the rest, oldest first, each batch one config; nothing lost, nothing twice
    rest = drain(buf)
    assert rest == [("aaaa", [0.0, 1.0, 2.0, 3.0], [0]), ("bbbb", [4.0, 5.0], [4])]


def test_switching_back_and_forth_never_mixes_configs_in_a_batch(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    for i, version in enumerate(["aaaa", "bbbb", "aaaa", "cccc"]):
        buf.set_config_version(version)
        commit(buf, 3, start=3 * i)
    batches = drain(buf)
    assert [v for v, _, _ in batches] == ["aaaa", "bbbb", "aaaa", "cccc"]
    assert [x for _, values, _ in batches for x in values] == [float(i) for i in range(12)]


def test_rows_of_an_older_agent_are_sent_without_a_version(tmp_path):
    path = tmp_path / "b.db"
    buf = open_test_buffer(path)
    commit(buf, 2)  # before any version was set: span 0
    buf.close()
    # what an older agent's file looks like: no cfg column, no span table
    conn = sqlite3.connect(path)
    for table in ("reading", "event"):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN cfg")
    conn.execute("DROP TABLE config_span")
    conn.commit()
    conn.close()
    again = open_test_buffer(path)
    again.set_config_version("bbbb")
    commit(again, 1, start=2)
    assert drain(again) == [("", [0.0, 1.0], []), ("bbbb", [2.0], [])]


def test_rows_an_older_agent_adds_between_spans_are_never_lost(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.set_config_version("aaaa")
    commit(buf, 3)
    # an older agent (a downgrade) inserts without cfg: span 0, with ids above span 1's
    buf.conn.executemany(
        "INSERT INTO reading (series_id, ts_ms, value, quality) VALUES (?,?,?,?)",
        [(1, T0 + 1000 * (3 + j), float(3 + j), 0) for j in range(2)],
    )
    buf.depth += 2
    commit(buf, 1, start=5)
    batches = drain(buf)
    assert sorted(v for _, values, _ in batches for v in values) == [float(i) for i in range(6)]
    assert {version: values for version, values, _ in batches} == {
        "": [3.0, 4.0],
        "aaaa": [0.0, 1.0, 2.0, 5.0],
    }


# -- with the append journal (invariant 8): a record carries the span of its rows ------------


def crash(buf):
    """What kill -9 leaves: the files as they are, no merge, no checkpoint."""
    buf.close_files()
    if buf.lock_fd >= 0:
        os.close(buf.lock_fd)
        buf.lock_fd = -1


def plain(buf, n, *, start, events=0):
    """A plain group commit (no new series): one journal record."""
    rows = [(1, T0 + 1000 * (start + j), float(start + j), 0) for j in range(n)]
    evs = [Event("ticket", T0 + 1000 * (start + j), (("lot", start + j),)) for j in range(events)]
    return buf.commit(rows, events=evs)


@pytest.mark.parametrize("killed", [False, True])
@pytest.mark.parametrize("max_readings", [3, 100])
def test_journal_records_keep_their_span_across_a_switch_and_a_kill(tmp_path, killed, max_readings):
    db = tmp_path / "b.db"
    buf = open_test_buffer(db)
    buf.commit([], new_series=[(1, key(1))])
    buf.set_config_version("aaaa")
    plain(buf, 5, start=0, events=1)
    buf.set_config_version("bbbb")
    plain(buf, 3, start=5, events=1)
    # both groups wait in the journal, none in the tables: what this test is about
    assert buf.conn.execute("SELECT count(*) FROM reading").fetchone()[0] == 0
    assert buf.conn.execute("SELECT count(*) FROM event").fetchone()[0] == 0
    assert len(journal_rows(db)) == 8
    if killed:
        crash(buf)
        buf = open_test_buffer(db)  # replays the journal into the tables
        assert buf.config_version == "bbbb"
    a = [float(v) for v in range(5)]
    expected: list[tuple[str, list[float], list[int]]] = (
        [("aaaa", a[:3], [0]), ("aaaa", a[3:], [])] if max_readings == 3 else [("aaaa", a, [0])]
    )
    assert drain(buf, max_readings=max_readings) == [*expected, ("bbbb", [5.0, 6.0, 7.0], [5])]
    buf.close()


def test_a_cut_taking_journal_rows_directly_names_their_span_not_the_current_one(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit([], new_series=[(1, key(1))])
    buf.set_config_version("aaaa")
    plain(buf, 5, start=0)
    buf.set_config_version("bbbb")  # the table holds nothing: the journal's rows decide
    first = decode(cut(buf, max_readings=3).body)
    assert (first.config_version, [r.value for r in first.readings()]) == ("aaaa", [0.0, 1.0, 2.0])
    # the two rows that batch left went to the table under their own span, not "unknown"
    assert buf.conn.execute("SELECT DISTINCT cfg FROM reading").fetchall() == [(1,)]
    plain(buf, 2, start=5)
    assert drain(buf) == [("aaaa", [3.0, 4.0], []), ("bbbb", [5.0, 6.0], [])]
    buf.close()


def test_a_journal_record_from_before_spans_replays_as_version_unknown(tmp_path):
    """A record an agent without journaled spans wrote (no `cfg` element) is span 0."""
    db = tmp_path / "b.db"
    buf = open_test_buffer(db)
    buf.commit([], new_series=[(1, key(1))])
    buf.set_config_version("aaaa")
    seq = int(buf.meta.get("journal_merged_seq", 0)) + 1
    crash(buf)
    payload = msgspec.msgpack.encode([seq, [(1, T0, 1.0, 0)], [], {}, {}, 0, {}])
    length = len(payload).to_bytes(4, "little")
    crc = zlib.crc32(payload, zlib.crc32(length)).to_bytes(4, "little")
    Path(f"{db}{JOURNAL_SUFFIX}").write_bytes(length + crc + payload)
    assert decode_journal(length + crc + payload).records[0].cfg == 0
    buf = open_test_buffer(db)
    assert drain(buf) == [("", [1.0], [])]
    buf.close()
