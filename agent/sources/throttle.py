"""Log lines of a source that retries forever, at a rate a journal can take.

A serial source that lost its port or a device that answers garbage would otherwise log one line
per poll, for hours; `LogThrottle` keeps one line per key per interval and counts the rest, so
the journal shows that the trouble went on without being flooded by it.
"""

from __future__ import annotations

import logging
import time


class LogThrottle:
    """At most one log line per key per interval; the lines in between are counted, not lost."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        self._logger.warning(message, *args)
        if skipped:
            self._logger.warning("(%d similar lines for %s were suppressed)", skipped, key)
