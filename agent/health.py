"""The gateway's health report: what it is made of, and the task that sends it.

The report (`wire.http.HealthReport`, docs/fleet.md) is built from what the agent already holds:
the buffer's meta (loss totals, restarts, last acknowledgement), its depth and oldest reading, the
agent clock, the uplink state, and each source's gap state. Sources are watched through their
sink (`WatchedSink`): the `source_down` / `source_up` events every source emits
(`agent.sources.gaps`) are the state, so no source needs to know about health.

Invariants:
- A report never blocks or delays a batch: it runs in its own task (`health`), shares only the
  HTTP client (two connections: the uploads use one at a time, so a report hanging on a dead
  receiver never holds the one a batch needs), and the buffer's thread only for one size read.
- Nothing queues: a report that is refused or fails is dropped and counted; the next one (at the
  next interval or state change) carries the state as it is then.
- A report is sent at start, every `cloud.health_interval_s`, and soon after a state change (a
  source down or up, the clock state, the uplink state), at most once per `_MIN_GAP_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from agent.ingest import SourceSink
from agent.sources.gaps import DOWN_KIND, UP_KIND
from wire.http import SourceHealth
from wire.models import Event, SeriesKey

log = logging.getLogger(__name__)

_MIN_GAP_S = 1.0  # state changes in a burst make one report, not one each
# A source's counters whose names hold one of these are its error counts.
_ERROR_WORDS = (
    "timeout",
    "bad",
    "error",
    "missed",
    "unparsable",
    "late",
    "partial",
    "reopen",
    "out_of_range",
    "fail",
    "lost",
    "reject",
    "invalid",
    "crc",
)


def config_version(data: bytes) -> str:
    """The config version in force: the first 16 hex digits of the file's SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


def error_counts(counters: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """The non-zero error counters of a source (`agent.metrics.source_counters`: a stat and
    its key, such as a Modbus unit id), named `stat` or `stat[key]`."""
    out: dict[str, int] = {}
    for (stat, key), n in sorted(counters.items()):
        if n and any(word in stat for word in _ERROR_WORDS):
            out[f"{stat}[{key}]" if key else stat] = n
    return out


@dataclass(slots=True)
class _Part:
    since_ms: int
    reason: str
    detail: str


@dataclass(slots=True)
class SourceState:
    """One source's gap state, as its events said."""

    name: str
    down: dict[str, _Part] = field(default_factory=dict)  # part ("" for the whole source)
    outages: int = 0

    def view(self, errors: dict[str, int]) -> SourceHealth:
        whole = self.down.get("")
        parts = sorted(p for p in self.down if p)
        if whole is None:
            return SourceHealth(
                name=self.name, state="up", parts_down=parts, outages=self.outages, errors=errors
            )
        return SourceHealth(
            name=self.name,
            state="down",
            down_since_ms=whole.since_ms,
            reason=whole.reason,
            detail=whole.detail or None,
            parts_down=parts,
            outages=self.outages,
            errors=errors,
        )


class SourceStates:
    """Every source's state; `changed` is set on each transition (the health task waits on it)."""

    def __init__(self, names: list[str]) -> None:
        self.sources = {n: SourceState(n) for n in names}
        self.changed = asyncio.Event()

    def observe(self, name: str, event: Event) -> None:
        if event.kind not in (DOWN_KIND, UP_KIND):
            return
        attrs = {k: v for k, v in event.attrs}
        state = self.sources.setdefault(name, SourceState(name))
        part = str(attrs.get("part", ""))
        if event.kind == DOWN_KIND:
            if part not in state.down:
                state.outages += 1
            state.down[part] = _Part(
                event.ts_ms, str(attrs.get("reason", "")), str(attrs.get("detail", ""))
            )
        else:
            state.down.pop(part, None)
        self.changed.set()


class WatchedSink:
    """A source's sink (the ingest's `SourceSink`) that tells `SourceStates` about its gap
    events; otherwise the very same sink, optional capabilities included."""

    def __init__(self, sink: SourceSink, name: str, states: SourceStates) -> None:
        self._sink = sink
        self._name = name
        self._states = states

    def series_id(self, key: SeriesKey) -> int:
        return self._sink.series_id(key)

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        self._sink.add(series_id, value, quality, ts_ms)

    def add_event(self, event: Event) -> None:
        self._sink.add_event(event)
        self._states.observe(self._name, event)

    def room(self) -> int:
        return self._sink.room()

    def last_value(self, series_id: int) -> float | None:
        return self._sink.last_value(series_id)

    async def committed(self) -> None:
        await self._sink.committed()

    # A source that commits its own state with its readings (MQTT's redelivery record) must
    # see through this wrapper: without these it would keep the record in memory only, and a
    # kill -9 would duplicate what it had acknowledged.
    def track_state(self, capture: Callable[[], bytes | None]) -> bytes | None:
        return self._sink.track_state(capture)

    def state_changed(self) -> None:
        self._sink.state_changed()


@dataclass(slots=True)
class HealthStats:
    sent: int = 0
    failed: int = 0  # refused or not delivered; never retried as such


async def report_loop(
    send: Callable[[], Awaitable[None]],
    changed: asyncio.Event,
    *,
    interval_s: float,
    stats: HealthStats,
) -> None:
    """Send a report now, then every `interval_s` and after each change (at most one per
    `_MIN_GAP_S`). `send` is awaited; any exception it raises is a failed report, logged on the
    first failure after a success only."""
    failing = False
    while True:
        changed.clear()
        try:
            await send()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stats.failed += 1
            if not failing:
                log.warning("health report not delivered: %s; the next one will try", exc)
            failing = True
        else:
            stats.sent += 1
            if failing:
                log.info("health reports delivered again")
            failing = False
        await asyncio.sleep(_MIN_GAP_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, interval_s - _MIN_GAP_S)):
                await changed.wait()
