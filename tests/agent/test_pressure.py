"""Buffer pressure as log lines: filling once per crossing, drops rate-limited with counts."""

from __future__ import annotations

import logging

import pytest

from agent.pressure import BufferPressure

MB = 1024 * 1024


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="agent.pressure")

    def take():
        out = [(r.levelname, r.getMessage()) for r in caplog.records]
        caplog.clear()
        return out

    return take


def test_the_end_of_a_full_stretch_says_its_drops_first(lines):
    p = BufferPressure(2 * MB, drop_every_s=60)
    p.observe(2 * MB, 100, now=0.0)
    p.observe(2 * MB, 50, now=10.0)
    lines()
    p.observe(MB, 0, now=12.0)  # the receiver is back and acknowledged: well below 70 %
    assert [text.split(" to stay")[0] for _, text in lines()] == [
        "buffer full: dropped 50 readings and events in the last 12 s",
        "buffer down to 50 % full",
    ]


def test_filling_is_said_once_per_crossing_with_hysteresis(lines):
    p = BufferPressure(10 * MB)
    p.observe(7 * MB, 0, now=0.0)
    assert lines() == []
    p.observe(8 * MB, 0, now=1.0)
    assert lines() == [
        (
            "WARNING",
            "buffer 80 % full (8.0 MB of 10.0 MB): at 100 % the oldest readings not yet sent "
            "are dropped, counted and reported to the cloud",
        )
    ]
    for used in (9, 7.5, 8.5, 10, 7.1):  # hovering around the mark: nothing new
        p.observe(int(used * MB), 0, now=2.0)
    assert lines() == []
    p.observe(int(6.5 * MB), 0, now=3.0)
    assert lines() == [("INFO", "buffer down to 65 % full")]
    p.observe(int(8.2 * MB), 0, now=4.0)
    assert [level for level, _ in lines()] == ["WARNING"]  # a new crossing
    assert p.fill == pytest.approx(0.82, abs=0.001)


def test_drops_first_at_once_then_one_line_a_minute_with_the_count_since(lines):
    p = BufferPressure(2 * MB, drop_every_s=60)
    p.observe(2 * MB, 1_000, now=100.0)
    assert lines()[1] == (
        "ERROR",
        "buffer full: dropped 1,000 readings and events to stay within 2.0 MB "
        "(1,000 since start); each drop is counted and reported to the cloud",
    )
    for t in range(101, 160):
        p.observe(2 * MB, 500, now=float(t))
    assert lines() == []  # 59 commits, 29,500 drops, not one line
    p.observe(2 * MB, 500, now=160.0)
    assert lines() == [
        (
            "ERROR",
            "buffer full: dropped 30,000 readings and events in the last 60 s to stay "
            "within 2.0 MB (31,000 since start); each drop is counted and reported to the cloud",
        )
    ]


def test_a_count_still_owed_is_written_on_a_later_turn_or_on_stop(lines):
    p = BufferPressure(2 * MB, drop_every_s=60)
    p.observe(2 * MB, 10, now=0.0)
    p.observe(2 * MB, 7, now=30.0)  # then the drops stop; the flusher still turns
    lines()
    p.observe(2 * MB, 0, now=59.0)
    assert lines() == []
    p.observe(int(1.5 * MB), 0, now=61.0)  # acknowledgements freed space meanwhile
    assert "dropped 7 readings and events in the last 61 s" in lines()[0][1]
    p.observe(MB, 0, now=200.0)
    assert lines() == [("INFO", "buffer down to 50 % full")]  # nothing owed, nothing said
    p.observe(2 * MB, 3, now=201.0)  # full again: said at once, the minute is long past
    p.observe(2 * MB, 4, now=220.0)
    lines()
    p.flush(2, now=222.0)  # stop: what is owed is said at once, the last commit's included
    assert lines() == [
        (
            "ERROR",
            "buffer full: dropped 6 readings and events in the last 21 s to stay within 2.0 MB "
            "(26 since start); each drop is counted and reported to the cloud",
        )
    ]
    p.flush(0, now=203.0)
    assert lines() == []


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="low < high"):
        BufferPressure(MB, high=0.5, low=0.6)
