"""Receiver outages as the operator sees them: one log line per change of the uplink's state.

The upload loop (`agent.sync`) reports every attempt's outcome here; this module decides whether
that is news. It keeps no clock and does no I/O: the caller passes monotonic seconds in, and a
`Notice` comes back only when a line is due, so the caller fetches the backlog (a few buffer
queries) only then.

States and lines:

    up    --failed-->   down     "uplink down (<reason>): <backlog>; retrying"           WARNING
    down  --failed-->   down     "uplink still down after <t> (...)", at most one line
                                 every `still_down_every_s`                              WARNING
    up    --refused-->  down     no line here: the refusal has its own ERROR line (agent.sync)
    down  --succeeded-> up       "uplink back after <t> down (<n> failed attempts): <backlog>"
                                                                                         INFO

Invariants: at most one line per state change plus one per `still_down_every_s` while down,
however fast the retries; a retry that fails again while down says nothing. `up` is what the
`edge_agent_uplink_up` gauge shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

STILL_DOWN_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the buffer holds that the receiver has not acknowledged."""

    readings: int
    events: int
    batches: int  # frozen in the outbox; the rest of the readings are not cut yet
    oldest_age_s: float | None

    def describe(self) -> str:
        held = f"{self.readings:,} readings"
        if self.events:
            held += f" and {self.events:,} events"
        oldest = "" if self.oldest_age_s is None else f", oldest {duration(self.oldest_age_s)} old"
        return f"{held} queued ({_count(self.batches, 'batch', 'es')} frozen){oldest}"


@dataclass(frozen=True, slots=True)
class Notice:
    """A line that is due; `log` writes it with the backlog of the moment."""

    kind: str  # "down", "still_down" or "back"
    reason: str
    down_s: float = 0.0
    failures: int = 0

    def text(self, backlog: Backlog) -> str:
        if self.kind == "down":
            return f"uplink down ({self.reason}): {backlog.describe()}; retrying"
        if self.kind == "still_down":
            return (
                f"uplink still down after {duration(self.down_s)} ({self.reason}, "
                f"{self._attempts()}): {backlog.describe()}"
            )
        return (
            f"uplink back after {duration(self.down_s)} down ({self._attempts()}, "
            f"last: {self.reason}): {backlog.describe()}"
        )

    def _attempts(self) -> str:
        return _count(self.failures, "failed attempt", "s")

    def log(self, backlog: Backlog) -> None:
        level = logging.INFO if self.kind == "back" else logging.WARNING
        log.log(level, "%s", self.text(backlog))


class Outages:
    """The uplink's up/down state, fed with the outcome of every attempt."""

    def __init__(self, *, still_down_every_s: float = STILL_DOWN_EVERY_S) -> None:
        self._every = still_down_every_s
        self.up = True
        self._since = 0.0  # when the current outage began
        self._last_line = 0.0
        self._failures = 0
        self._reason = ""

    def failed(self, reason: str, now: float) -> Notice | None:
        """An attempt failed in a way a retry may fix (transport, 429, 5xx)."""
        self._failures += 1
        self._reason = reason
        if self.up:
            self._go_down(now)
            return Notice("down", reason)
        if now - self._last_line >= self._every:
            self._last_line = now
            return Notice("still_down", reason, now - self._since, self._failures)
        return None

    def refused(self, reason: str, now: float) -> None:
        """The receiver refused; the caller has logged why. Down, so that the end is logged."""
        self._failures += 1
        self._reason = reason
        if self.up:
            self._go_down(now)

    def succeeded(self, now: float) -> Notice | None:
        """An attempt got an answer that was not a failure: the receiver is back, if it was away."""
        if self.up:
            return None
        notice = Notice("back", self._reason, now - self._since, self._failures)
        self.up = True
        self._failures = 0
        return notice

    def _go_down(self, now: float) -> None:
        self.up = False
        self._since = self._last_line = now


def _count(n: int, noun: str, plural: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else plural}"


def duration(seconds: float) -> str:
    """`0.4 s`, `42 s`, `2 min 10 s`, `3 h 05 min`: what an operator reads at a glance."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s // 60 % 60:02d} min"
