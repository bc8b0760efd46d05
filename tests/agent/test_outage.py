"""The uplink's state changes as log lines: one per change, still-down rate-limited."""

from __future__ import annotations

import logging

import pytest

from agent.outage import Backlog, Outages, duration

BACKLOG = Backlog(readings=12_345, events=0, batches=3, oldest_age_s=42.0)


def test_down_once_then_silent_until_still_down_is_due():
    o = Outages(still_down_every_s=300)
    down = o.failed("ConnectError: refused", now=100.0)
    assert down is not None
    assert down.text(BACKLOG) == (
        "uplink down (ConnectError: refused): 12,345 readings queued (3 batches frozen), "
        "oldest 42 s old; retrying"
    )
    assert not o.up
    assert [o.failed("ConnectError: refused", now=100.0 + t) for t in (1, 5, 60, 299)] == [None] * 4
    still = o.failed("503 unavailable", now=400.0)
    assert still is not None
    assert still.text(BACKLOG).startswith(
        "uplink still down after 5 min 0 s (503 unavailable, 6 failed attempts): 12,345 readings"
    )
    assert o.failed("503 unavailable", now=650.0) is None
    assert o.failed("503 unavailable", now=700.0) is not None


def test_back_says_how_long_and_how_many_attempts_then_silent():
    o = Outages()
    assert o.succeeded(now=1.0) is None  # up and up: no news
    o.failed("ReadTimeout: no detail", now=10.0)
    o.failed("ReadTimeout: no detail", now=12.0)
    back = o.succeeded(now=140.0)
    assert back is not None
    assert o.up
    assert back.text(Backlog(96_748, 2, 5, 140.5)) == (
        "uplink back after 2 min 10 s down (2 failed attempts, last: ReadTimeout: no detail): "
        "96,748 readings and 2 events queued (5 batches frozen), oldest 2 min 20 s old"
    )
    assert o.succeeded(now=141.0) is None
    assert o.failed("x", now=150.0) is not None  # a new outage is news again


def test_a_refusal_is_down_without_a_line_of_its_own_and_its_end_is_logged():
    o = Outages()
    o.refused("403 forbidden", now=0.0)
    assert not o.up
    assert o.failed("ConnectError", now=1.0) is None  # already down
    back = o.succeeded(now=900.0)
    assert back is not None
    assert "after 15 min 0 s down" in back.text(BACKLOG)


def test_levels(caplog):
    o = Outages()
    caplog.set_level(logging.INFO, logger="agent.outage")
    o.failed("boom", now=0.0).log(Backlog(0, 0, 0, None))  # type: ignore[union-attr]
    o.succeeded(now=1.0).log(Backlog(0, 0, 0, None))  # type: ignore[union-attr]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "uplink down (boom): 0 readings queued (0 batches frozen); retrying"),
        (
            "INFO",
            "uplink back after 1.0 s down (1 failed attempt, last: boom): "
            "0 readings queued (0 batches frozen)",
        ),
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (9.94, "9.9 s"), (42.7, "42 s"), (130, "2 min 10 s"), (4000, "66 min 40 s")]
    + [(7200, "2 h 00 min"), (90061, "25 h 01 min")],
)
def test_duration(seconds, text):
    assert duration(seconds) == text
