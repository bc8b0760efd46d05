"""What every source hands the agent, and the collaborators every source is given.

A source is an object with `async run(emit)` that runs until cancelled and never raises for
device or port trouble (that is counted in its `stats`, logged at a throttled rate, flagged on
readings and retried); only ConfigError escapes, at start. Each batch of results is one
`Delivery`, passed to `await emit(delivery)`; awaiting `emit` is the backpressure.

`Delivery.ack()` must be called once the readings are committed to the buffer. For the MCU source
it lets the firmware delete them; for Modbus and ASCII sources (which cannot redeliver) it is a
no-op, so the agent may treat every source alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from wire.models import Event, Reading


class Clock(Protocol):
    """Stamps readings: `now()` is (UTC epoch ms, quality bits to OR into the reading).

    The agent's clock flags readings taken while its wall clock is untrusted (TIME_UNTRUSTED plus
    its epoch bits); `agent.clock.AgentClock` has this shape.
    """

    def now(self) -> tuple[int, int]: ...


class SystemClock:
    """The host's wall clock, taken as trusted. For tools, tests and the emulator."""

    def now(self) -> tuple[int, int]:
        return time.time_ns() // 1_000_000, 0


def _no_ack() -> None:
    return None


@dataclass(frozen=True, slots=True)
class McuPosition:
    """Where a delivery ends in one MCU's stream: the key that makes delivery exactly-once."""

    uid: int
    boot: int
    seq: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """Readings and events from one source, in the order the source produced them."""

    source: str
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()
    ack: Callable[[], None] = field(default=_no_ack, compare=False)
    position: McuPosition | None = None  # MCU only: store it with the readings, atomically


Emit = Callable[[Delivery], Awaitable[None]]


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
