"""Gaps: the one way every source says it stopped hearing its device, and that it hears it again.

The model (docs/agent.md, "Gaps"), the same for every source type:

- **`source_down`** event when a source loses its device: the port vanished, the link or broker
  went away, a polled instrument stopped answering, a streaming one fell silent. Attributes:
  `source` (the source's name), `reason` (one of `REASONS`), `detail` (free text, the error),
  and `part` when only one device of a source is down (a Modbus unit: its device name).
- **`source_up`** event when it hears the device again, with the same `source`/`part`, the
  `reason` it had been down for and `down_ms`: how long no value came, measured from the last
  value before the loss (or from the loss itself when there was none), so it covers the silence
  that led to the loss being noticed.
- One log line per transition: a WARNING `"<source>: lost <part> (<reason>: <detail>)"` and an
  INFO `"<source>: <part> back after <s> s (was <reason>)"`. Never throttled: a transition is
  news; the retries in between are throttled by each source.
- Where polling is the contract (Modbus, ASCII polled) every missed poll is also a BAD reading
  with value 0, per series, at the poll's time: a figure or chart sees the hole at the resolution
  of the polls. Streaming sources (ASCII streaming, MCU, MQTT) have no poll to miss: the events
  are their gap.

Transitions are idempotent: `down` while down and `up` while up do nothing, so a source may
call them from every failure and every success without keeping its own state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from agent.sources import Sink, Stamper
from wire.models import Event, Quality

DOWN_KIND: Final = "source_down"
UP_KIND: Final = "source_up"

Reason = Literal["port_lost", "no_answer", "silent", "link_lost", "broker_lost", "unit_down"]
REASONS: Final[tuple[str, ...]] = (
    "port_lost",  # the serial port vanished or cannot be opened
    "no_answer",  # a polled device stopped answering (timeouts in a row)
    "silent",  # a streaming device sent nothing for its silence timeout
    "link_lost",  # a bus link (Modbus RTU/TCP client) was lost or cannot connect
    "broker_lost",  # the MQTT broker connection was lost
    "unit_down",  # one unit of a bus stopped answering; the others may be fine
)


@dataclass(slots=True)
class _Down:
    reason: str
    since: float  # monotonic: the last value before the loss, or the loss


@dataclass(slots=True)
class GapStats:
    downs: int = 0  # source_down events
    ups: int = 0  # source_up events


class Gaps:
    """Tracks which parts of one source are down and reports each transition once.

    `heard(part)` records that a value came (cheap; call it on every answer); `down(...)` and
    `up(...)` report transitions to `sink` as events and to the log."""

    def __init__(
        self,
        source: str,
        *,
        clock: Stamper,
        logger: logging.Logger,
        monotonic: Callable[[], float] = time.monotonic,
        stats: GapStats | None = None,
    ) -> None:
        self.source = source
        self._clock = clock
        self._log = logger
        self._monotonic = monotonic
        self._down: dict[str, _Down] = {}
        self._heard: dict[str, float] = {}
        self.stats = stats if stats is not None else GapStats()

    def is_down(self, part: str = "") -> bool:
        return part in self._down

    def heard(self, part: str = "") -> None:
        self._heard[part] = self._monotonic()

    def down(
        self, sink: Sink, reason: Reason, detail: str = "", *, part: str = "", log: bool = True
    ) -> bool:
        """Report `part` lost (once); True if this was the transition. `log=False` for a
        source that writes its own line (the MQTT source)."""
        if part in self._down:
            return False
        now = self._monotonic()
        self._down[part] = _Down(reason, self._heard.get(part, now))
        self.stats.downs += 1
        attrs: list[tuple[str, str | int]] = [("source", self.source), ("reason", reason)]
        if part:
            attrs.append(("part", part))
        if detail:
            attrs.append(("detail", detail[:200]))
        self._emit(sink, DOWN_KIND, attrs)
        what = f"lost {part}" if part else "lost"
        if log:
            self._log.warning("%s: %s (%s: %s)", self.source, what, reason, detail or "no detail")
        return True

    def up(self, sink: Sink, *, part: str = "", log: bool = True) -> bool:
        """Report `part` back (once, if it was down); True if this was the transition."""
        self.heard(part)
        was = self._down.pop(part, None)
        if was is None:
            return False
        down_ms = max(0, round((self._monotonic() - was.since) * 1000))
        self.stats.ups += 1
        attrs: list[tuple[str, str | int]] = [("source", self.source), ("reason", was.reason)]
        if part:
            attrs.append(("part", part))
        attrs.append(("down_ms", down_ms))
        self._emit(sink, UP_KIND, attrs)
        what = f"{part} back" if part else "back"
        if log:
            self._log.info(
                "%s: %s after %.1f s (was %s)", self.source, what, down_ms / 1000, was.reason
            )
        return True

    def _emit(self, sink: Sink, kind: str, attrs: list[tuple[str, str | int]]) -> None:
        ts, bits = self._clock.now()
        sink.add_event(Event(kind, ts, tuple(attrs), Quality.GOOD | bits))
