"""Where sources hand readings over: cheap appends on the event loop, committed in groups.

Sources (see `agent.sources`) call `series_id()` once per series and then `add()` per reading.
`add()` only appends a tuple to a list; the runtime's flusher takes the whole list every
`flush_interval_ms` (or as soon as it holds `flush_max_readings`) and commits it to the buffer
in one transaction. So the loss window on a crash or power cut is the readings still in this
list: at most one flush interval.

Events (`add_event`) ride in the same group, and so do MCU positions (`set_position`, used by
`agent.watermarks.BufferWatermarks`): a position set after some readings is committed in the same
transaction as they are, never before.

A source that must acknowledge upstream only after a reading is durable (MQTT QoS 1) awaits
`committed()`: it returns once everything added before the call is in a committed group.

If the buffer falls behind (a stalled disk), the list is capped at `max_pending` readings and
events together; beyond that new ones are refused and counted as buffer-full drops, so memory
stays bounded and the loss is still reported.

The door: what enters here meets the contract's own rules (`wire.models`: `key_problem`,
`reading_problem`, `event_problem`), so nothing the buffer holds can fail to encode. A series key
that breaks them gets no id of its own (a negative one, per problem, that `add` refuses); a
reading or event that breaks them is not stored but counted by reason (`Group.rejected`, which
the buffer adds to the next batch's `rejected_invalid`) and logged, at most once a minute per
source, field and reason. Times are checked only where they are final: a stamp on an untrusted
clock epoch (quality above the wire byte) is corrected at the cut, which checks it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.buffer import NewRow, Position, newest_values
from agent.clock import WIRE_QUALITY_MASK, AgentClock, Epoch, Reference
from agent.sources.throttle import LogThrottle
from wire.models import (
    VALID_QUALITY_CODES,
    Event,
    Problem,
    Reason,
    SeriesKey,
    event_problem,
    key_problem,
    reading_problem,
)

log = logging.getLogger(__name__)
_INT64 = 2**63


@dataclass(slots=True)
class Group:
    """One flush: what the buffer commits in one transaction."""

    rows: list[NewRow]
    new_series: list[tuple[int, SeriesKey]]
    new_epochs: list[Epoch]
    references: list[Reference]
    dropped: int
    generation: int
    events: list[Event] = field(default_factory=list)
    positions: dict[int, Position | None] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)  # refused at the door, by reason
    states: dict[str, bytes] = field(default_factory=dict)  # source state key -> new state

    def is_empty(self) -> bool:
        return not (
            self.rejected
            or self.states
            or self.rows
            or self.new_series
            or self.new_epochs
            or self.references
            or self.dropped
            or self.events
            or self.positions
        )


@dataclass(slots=True)
class _Waiter:
    generation: int
    future: asyncio.Future[None] = field(repr=False)


class Ingest:
    def __init__(
        self,
        clock: AgentClock,
        *,
        series: dict[int, SeriesKey],
        last_values: dict[int, tuple[int, float]],
        flush_max_readings: int,
        max_pending: int,
        log_interval_s: float = 60.0,
        states: Mapping[str, bytes] | None = None,
    ) -> None:
        self._clock = clock
        # a series an older version stored with a key that breaks the rules gets no new readings
        self._ids = {k: i for i, k in series.items() if key_problem(k) is None}
        self._next_id = max(series, default=0) + 1
        self._last = last_values
        self._flush_max = flush_max_readings
        self._max_pending = max_pending
        self._rows: list[NewRow] = []
        self._events: list[Event] = []
        self._positions: dict[int, Position | None] = {}
        self._new_series: list[tuple[int, SeriesKey]] = []
        self._dropped = 0
        self._generation = 0
        self._committed_generation = 0
        self._pending_newest: dict[int, tuple[int, float]] = {}
        self._pending_newest_of = (-1, 0)
        self._waiters: list[_Waiter] = []
        self._rejected: Counter[str] = Counter()
        self._bad_ids: dict[Problem, int] = {}  # one id per problem, not per key: bounded
        self._bad_keys: dict[int, Problem] = {}
        self._throttle = LogThrottle(log, log_interval_s)
        self._committed_states = dict(states or {})  # as the buffer held them at start
        self._captures: dict[str, Callable[[], bytes | None]] = {}
        self._states_back: dict[str, bytes] = {}  # from a group whose commit failed
        self._state_dirty = False
        self.readings_in = 0
        self.events_in = 0
        self.full = asyncio.Event()  # set when a flush should not wait for the timer

    def for_source(self, name: str) -> SourceSink:
        """The sink a source is given: the same ingest, naming the source in refusals."""
        return SourceSink(self, name)

    def series_id(self, key: SeriesKey) -> int:
        sid = self._ids.get(key)
        if sid is None:
            problem = key_problem(key)
            if problem is not None:
                return self._bad_id(problem)
            sid = self._ids[key] = self._next_id
            self._next_id += 1
            self._new_series.append((sid, key))
        return sid

    def _bad_id(self, problem: Problem) -> int:
        sid = self._bad_ids.get(problem)
        if sid is None:
            sid = self._bad_ids[problem] = -1 - len(self._bad_ids)
            self._bad_keys[sid] = problem
        return sid

    def last_value(self, series_id: int) -> float | None:
        """The newest value committed (or pending) for a series, across restarts. Costs a pass
        over the pending rows when they changed since the last call: a source resuming many
        counters pays it once, not once per series."""
        state = (self._generation, len(self._rows))  # rows only grow between takes
        if self._pending_newest_of != state:
            self._pending_newest = newest_values(self._rows)
            self._pending_newest_of = state
        last = self._pending_newest.get(series_id) or self._last.get(series_id)
        return None if last is None else last[1]

    def add(
        self,
        series_id: int,
        value: float,
        quality: int = 0,
        ts_ms: int | None = None,
        *,
        source: str = "",
    ) -> None:
        """One reading, stamped now by the agent's clock unless the source knows its time.
        Refused (counted, logged) if its series, value, quality or final time breaks the
        contract."""
        self.readings_in += 1
        # The common case first, the checks below inlined (this runs once per reading): a
        # float, finite (x - x is NaN for inf and NaN), a valid final code, an agent stamp.
        if (
            ts_ms is None
            and series_id >= 0
            and type(value) is float
            and value - value == 0.0
            and type(quality) is int
            and quality in VALID_QUALITY_CODES
        ):
            problem = None
        else:
            problem = self._check(series_id, value, quality, ts_ms)
            if problem is None:  # an int (or bool) value: stored as the float it stands for,
                value = float(value)  # not as an int SQLite may not hold (2**63 and above)
        if problem is not None:
            self._refuse("reading", problem, source)
            return
        if len(self._rows) + len(self._events) >= self._max_pending:
            self._dropped += 1
            return
        if ts_ms is None:
            ts_ms, flags = self._clock.now()
            quality |= flags
        # the newest value per series is taken from the rows at `take`, not kept per reading
        self._rows.append((series_id, ts_ms, value, quality))
        if len(self._rows) >= self._flush_max:
            self.full.set()

    def _check(
        self, series_id: int, value: float, quality: int, ts_ms: int | None
    ) -> Problem | None:
        """What `add` must refuse a reading for, or None."""
        problem = self._bad_keys.get(series_id) if series_id < 0 else None
        if problem is None:
            final = quality <= WIRE_QUALITY_MASK
            try:
                problem = reading_problem(
                    ts_ms if final else None, value, quality & WIRE_QUALITY_MASK
                ) or (None if final else _stamp_problem(ts_ms, quality))
            except (OverflowError, TypeError):  # an int too big for a float, or not a number
                problem = Problem("value", Reason.NOT_FINITE, f"{value!r:.40} is not a float")
        return problem

    def add_event(self, event: Event, *, source: str = "") -> None:
        """One event, as the source stamped it (`ts_ms` and quality from the agent's clock, so
        untrusted time is flagged and corrected like a reading's). Refused (counted, logged) if
        it breaks the contract."""
        self.events_in += 1
        final = event.quality <= WIRE_QUALITY_MASK
        checked = (
            event
            if final
            else dataclasses.replace(event, quality=event.quality & WIRE_QUALITY_MASK)
        )
        problem = event_problem(checked, check_ts=final) or (
            None if final else _stamp_problem(event.ts_ms, event.quality)
        )
        if problem is not None:
            self._refuse("event", problem, source)
            return
        if self.pending >= self._max_pending:
            self._dropped += 1
            return
        self._events.append(event)
        if self.pending >= self._flush_max:
            self.full.set()

    def _refuse(self, what: str, problem: Problem, source: str) -> None:
        reason = str(problem.reason)
        self._rejected[reason] += 1
        self._throttle.warning(
            f"{source}|{problem.field}|{reason}",
            "source %r: %s refused, not stored: %s",
            source or "?",
            what,
            problem,
        )

    def set_position(self, uid: int, position: Position | None) -> None:
        """Commit `position` (None: forget it) for MCU `uid` with what was added before."""
        self._positions[uid] = position

    def track_state(self, key: str, capture: Callable[[], bytes | None]) -> bytes | None:
        """Commit `capture()` with every group from now on (None: unchanged, nothing written);
        returns the state committed under `key` before this process started, if any. `capture`
        runs on the event loop inside `take()` and must not raise."""
        self._captures[key] = capture
        return self._committed_states.get(key)

    def state_changed(self) -> None:
        """A tracked state changed in a way that must be committed before the source relies
        on it: the next `committed()` waits for the next group."""
        self._state_dirty = True

    def add_rows(self, rows: list[NewRow]) -> None:
        """Many readings already stamped (bulk sources, benchmarks)."""
        self.readings_in += len(rows)
        room = max(0, self._max_pending - self.pending)
        if len(rows) > room:
            self._dropped += len(rows) - room
            rows = rows[:room]
        self._rows.extend(rows)
        if len(self._rows) >= self._flush_max:
            self.full.set()

    @property
    def pending(self) -> int:
        """Readings and events waiting for the next commit."""
        return len(self._rows) + len(self._events)

    def room(self) -> int:
        """How many readings `add` takes now before it starts refusing (and counting) them. A
        source that can leave data with its sender (MQTT QoS 1) asks first instead of losing it."""
        return max(0, self._max_pending - self.pending)

    def take(self) -> Group:
        """Everything added so far, for one commit."""
        self._generation += 1
        states, self._states_back = self._states_back, {}
        for key, capture in self._captures.items():
            state = capture()
            if state is not None:
                states[key] = state
        self._state_dirty = False
        self._last.update(newest_values(self._rows))
        group = Group(
            rows=self._rows,
            new_series=self._new_series,
            new_epochs=self._clock.take_new_epochs(),
            references=self._clock.take_references(),
            dropped=self._dropped,
            generation=self._generation,
            events=self._events,
            positions=self._positions,
            rejected=self._rejected,
            states=states,
        )
        self._rows, self._new_series, self._dropped = [], [], 0
        self._events, self._positions, self._rejected = [], {}, Counter()
        self.full.clear()
        return group

    def give_back(self, group: Group) -> None:
        """A commit failed: keep its contents for the next one (older rows stay first)."""
        self._rows[:0] = group.rows
        self._events[:0] = group.events
        self._new_series[:0] = group.new_series
        self._clock.new_epochs[:0] = group.new_epochs
        self._clock.references[:0] = group.references
        self._dropped += group.dropped
        self._rejected.update(group.rejected)
        self._positions = {**group.positions, **self._positions}  # newer ones win
        self._states_back = {**group.states, **self._states_back}  # a newer capture wins at take
        overflow = len(self._rows) - self._max_pending
        if overflow > 0:  # still bounded: the oldest give way, counted
            del self._rows[:overflow]
            self._dropped += overflow
        overflow = self.pending - self._max_pending
        if overflow > 0:  # events last: the readings have already made room where they could
            del self._events[:overflow]
            self._dropped += overflow

    def mark_committed(self, group: Group) -> None:
        self._committed_generation = group.generation
        still: list[_Waiter] = []
        for w in self._waiters:
            if w.generation <= group.generation:
                if not w.future.done():
                    w.future.set_result(None)
            else:
                still.append(w)
        self._waiters = still

    async def committed(self) -> None:
        """Wait until every reading added before this call is committed."""
        if (
            self._rows
            or self._new_series
            or self._events
            or self._positions
            or self._rejected
            or self._state_dirty
            or self._states_back
        ):
            target = self._generation + 1  # the next group taken holds them
            self.full.set()
        elif self._committed_generation < self._generation:
            target = self._generation  # taken, commit in progress
        else:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(target, future))
        await future


def _stamp_problem(ts_ms: int | None, quality: int) -> Problem | None:
    """A stamp on an untrusted epoch is checked at the cut; here only that it fits the buffer's
    64-bit integer columns (a source passing nonsense must not fail the group commit)."""
    if not 0 <= quality < _INT64:
        return Problem("quality", Reason.QUALITY_CODE, f"unknown code {quality}")
    if ts_ms is not None and not -_INT64 <= ts_ms < _INT64:
        return Problem("ts", Reason.TIMESTAMP_RANGE, f"timestamp {ts_ms} ms is out of range")
    return None


class SourceSink:
    """`Sink` for one source: forwards to the ingest with the source's name for the log."""

    def __init__(self, ingest: Ingest, name: str) -> None:
        self.ingest = ingest
        self.name = name

    def series_id(self, key: SeriesKey) -> int:
        return self.ingest.series_id(key)

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        self.ingest.add(series_id, value, quality, ts_ms, source=self.name)

    def add_event(self, event: Event) -> None:
        self.ingest.add_event(event, source=self.name)

    def room(self) -> int:
        return self.ingest.room()

    def track_state(self, capture: Callable[[], bytes | None]) -> bytes | None:
        """`Ingest.track_state` under this source's name."""
        return self.ingest.track_state(self.name, capture)

    def state_changed(self) -> None:
        self.ingest.state_changed()

    def last_value(self, series_id: int) -> float | None:
        return self.ingest.last_value(series_id)

    async def committed(self) -> None:
        await self.ingest.committed()
