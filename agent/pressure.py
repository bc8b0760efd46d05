"""Buffer pressure as the operator sees it: the buffer filling up, and readings dropped.

The buffer keeps its bound by dropping the oldest uncut readings (invariant 4 of `agent.buffer`)
and counts every drop for the cloud; this module puts the same facts in the log, sparingly. The
runtime calls `observe` on every flusher turn (after the group commit, if there was one) with
the file's used bytes and that commit's drops, and `flush` on stop. No clock, no I/O besides
the log: time comes in as monotonic seconds.

Lines:
- `buffer 83 % full (...)` (WARNING) when the fill reaches `high` (80 %), once per crossing;
  `buffer down to 52 % full` (INFO) when it falls below `low` (70 %), which re-arms the first.
  The gap between the two is the hysteresis: a buffer hovering at 80 % says so once.
- `buffer full: dropped N readings and events ...` (ERROR): the first drop at once, then
  at most one line every `drop_every_s` (60 s) with the count since the previous line, so a
  buffer that drops on every commit writes one line a minute, and no drop goes unmentioned: a
  count still owed is written once the minute is up, when the fill falls below `low`, or on
  stop (`flush`), whichever comes first.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

HIGH = 0.80
LOW = 0.70
DROP_EVERY_S = 60.0


class BufferPressure:
    """Drops are what `Buffer.commit` reports: the oldest uncut readings (then events) evicted
    for the bound, plus what the hand-over refused while the disk stalled."""

    def __init__(
        self,
        max_bytes: int,
        *,
        high: float = HIGH,
        low: float = LOW,
        drop_every_s: float = DROP_EVERY_S,
    ) -> None:
        if not 0 < low < high <= 1:
            raise ValueError("buffer pressure needs 0 < low < high <= 1")
        self._max = max_bytes
        self._high, self._low = high, low
        self._every = drop_every_s
        self.fill = 0.0  # used / max at the last flusher turn, for the metrics
        self._armed = True  # False between a "full" line and the fall below `low`
        self._owed = 0  # drops not yet in a line
        self._total = 0
        self._last_drop_line: float | None = None

    def observe(self, used_bytes: int, dropped: int, now: float) -> None:
        """The file's used bytes now, and the readings and events the last commit dropped."""
        self.fill = used_bytes / self._max
        if self._armed and self.fill >= self._high:
            self._armed = False
            log.warning(
                "buffer %.0f %% full (%s of %s): at 100 %% the oldest readings not yet sent "
                "are dropped, counted and reported to the cloud",
                self.fill * 100,
                _mb(used_bytes),
                _mb(self._max),
            )
        self._add(dropped)
        last = self._last_drop_line
        if self._owed and (last is None or now - last >= self._every):
            self._write(now)
        if not self._armed and self.fill < self._low:
            self._armed = True
            if self._owed:  # the end of a full stretch: its drops first, however recent the last
                self._write(now)
            log.info("buffer down to %.0f %% full", self.fill * 100)

    def flush(self, dropped: int, now: float) -> None:
        """On stop: write the drops still owed, the last commit's `dropped` included, however
        recent the previous line."""
        self._add(dropped)
        if self._owed:
            self._write(now)

    def _add(self, dropped: int) -> None:
        self._owed += dropped
        self._total += dropped

    def _write(self, now: float) -> None:
        last = self._last_drop_line
        since = "" if last is None else f" in the last {now - last:.0f} s"
        log.error(
            "buffer full: dropped %s readings and events%s to stay within %s "
            "(%s since start); each drop is counted and reported to the cloud",
            f"{self._owed:,}",
            since,
            _mb(self._max),
            f"{self._total:,}",
        )
        self._owed = 0
        self._last_drop_line = now


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"
