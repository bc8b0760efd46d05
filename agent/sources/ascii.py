"""The ASCII instrument source: one port, one instrument, polled or streaming.

Polled: every `poll_interval_ms`, drop stale input, send the command, wait up to
`answer_timeout_ms` for a line that parses. Lines that do not parse are counted (and logged at a
throttled rate) while waiting; a timeout or an error answer yields BAD readings, so the missing
value is explicit. Streaming: send the start command once (if any), then parse every line that
arrives; unparsable lines are counted and skipped.

Answers belong to their poll. The instrument answers requests in order, but it may answer late:
after a poll timed out, its answer can still arrive up to `late_answer_ms` after the request. So
the next request is not sent before then; polls that fall due meanwhile are missed (BAD readings,
`stats.missed_polls`), and whatever arrives between polls is read, dropped and counted
(`stats.late_answers`), never stamped onto a later poll. Input is also flushed before every
request. The price: after a timeout, polling pauses until `late_answer_ms` has passed.

Gaps (`agent.sources.gaps`): a lost or unopenable port, `lost_after_timeouts` polls in a row
without an answer, or (streaming, `on_silence = "gap"`) `silence_timeout_ms` without a value is
a `source_down` event and one log line; the next value is `source_up` with how long no value
came. While polled and down, every poll interval still yields BAD readings, whether the port is
open or not, as Modbus does. After `lost_after_timeouts` timeouts in a row (or silence when
streaming) the source checks that the port's path still names the device it holds; if not (an
adapter replugged under the same by-id name), it reopens. EIO/ENODEV reopen at once. Reopening
uses capped jittered backoff, cut short when a vanished path appears again. A silent streaming
instrument is sent its start command again (a power-cycled scale stops streaming). Nothing here
raises out of `run()` except ConfigError at start.

With a `ticket` configuration, every answer's weight also feeds a `TicketBuilder`
(`firmware_bridge.tickets`), and each weighing it completes is an event (a weighbridge ticket).
The `toledo-continuous` preset reads binary-status frames through `firmware_bridge.toledo`
instead of lines; a frame failing its checksum is dropped and counted (`stats.bad_frames`).

Readings and events (weighbridge tickets) are stamped by the `Stamper` given (the agent's clock)
and handed to the sink in the order the instrument produced them. Nothing to acknowledge: an
instrument cannot redeliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agent.sources import Sink, Stamper, add_readings
from agent.sources.gaps import Gaps, GapStats
from agent.sources.throttle import LogThrottle
from firmware_bridge.ascii_protocol import (
    Answer,
    AnswerParser,
    AsciiConfig,
    AsciiValue,
    LineSplitter,
    LineStats,
    compile_spec,
)
from firmware_bridge.backoff import Backoff
from firmware_bridge.errors import (
    ConfigError,
    DeviceError,
    PortError,
    PortLostError,
    UnexpectedUnitError,
    UnparsableAnswerError,
)
from firmware_bridge.port import PortStats, SerialPort, device_present
from firmware_bridge.tickets import TicketBuilder, ticket_problems
from firmware_bridge.toledo import BadFrame, ToledoFramer, ToledoStats
from wire.models import Event, Quality, Reading, SeriesKey


class _Lines(Protocol):
    """What the run loops read through: complete lines out of bytes in."""

    stats: LineStats

    def feed(self, data: bytes) -> list[bytes]: ...
    def reset(self) -> int: ...
    @property
    def partial(self) -> int: ...


class _ToledoLines:
    """Toledo continuous frames as the canonical lines the `toledo-continuous` preset parses;
    a frame that fails its checksum or its fixed bits goes to `on_bad`, never further."""

    def __init__(self, on_bad: Callable[[BadFrame], None]) -> None:
        self.framer = ToledoFramer(checksum=True)
        self.stats = LineStats()
        self._on_bad = on_bad

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for item in self.framer.feed(data):
            if isinstance(item, BadFrame):
                self._on_bad(item)
            else:
                self.stats.lines += 1
                out.append(item.encode("ascii"))
        return out

    def reset(self) -> int:
        return self.framer.reset()

    @property
    def partial(self) -> int:
        return self.framer.partial


@dataclass(slots=True)
class AsciiStats:
    port: PortStats = field(default_factory=PortStats)
    lines: LineStats = field(default_factory=LineStats)
    frames: ToledoStats = field(default_factory=ToledoStats)
    answers: int = 0
    unparsable: int = 0  # lines refused, including bad_unit ones
    bad_unit: int = 0  # lines naming a unit their value cannot have (refused)
    out_of_range: int = 0  # values outside their plausible range (stored BAD)
    error_answers: int = 0
    timeouts: int = 0
    partial_lines: int = 0  # unfinished lines dropped at a timeout or before a new request
    readings: int = 0
    bad_readings: int = 0
    events: int = 0
    reopens: int = 0
    outages: GapStats = field(default_factory=GapStats)  # source_down / source_up events
    bad_frames: int = 0  # Toledo continuous: checksum or status bytes wrong; dropped
    tickets: int = 0  # weighings made by the ticket builder
    late_answers: int = 0  # answers after their poll's deadline: dropped
    missed_polls: int = 0  # polls due while no request could be sent (port down, late window)


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one answer (or its absence) yields, in the order the instrument produced it."""

    readings: tuple[Reading, ...]
    events: tuple[Event, ...] = ()


def _hand_over(sink: Sink, batch: _Batch) -> None:
    add_readings(sink, batch.readings)
    for event in batch.events:
        sink.add_event(event)


class AsciiSource:
    def __init__(
        self,
        config: AsciiConfig,
        *,
        clock: Stamper,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.spec = compile_spec(config)
        self.config = config
        self.name = config.name
        self._parser = AnswerParser(self.spec)
        self._clock = clock
        self._rng = rng
        self._log = logger or logging.getLogger(__name__)
        self._throttle = LogThrottle(self._log)
        self.stats = AsciiStats()
        self.tap: Callable[[str], None] | None = None  # `edge-agent probe`: raw data
        self._keys: dict[tuple[str, str], SeriesKey] = {}
        self._last_unit: dict[str, str] = {}
        self.gaps = Gaps(self.name, clock=clock, logger=self._log, stats=self.stats.outages)
        self._tickets: TicketBuilder | None = None
        if config.ticket is not None:
            problems = ticket_problems(
                config.ticket,
                set(self.spec.pattern.groupindex),
                {v.metric for v in self.spec.values},
                f"ascii {config.name!r}.ticket",
            )
            if problems:
                raise ConfigError(problems)
            self._tickets = TicketBuilder(config.ticket)
        self._next_poll = 0.0  # loop time the next poll is due
        self._clear_at = 0.0  # loop time after which no late answer can come

    async def run(self, sink: Sink) -> None:
        cfg = self.config
        backoff = Backoff(cfg.reopen_initial_ms / 1000, cfg.reopen_max_ms / 1000, self._rng)
        self._next_poll = asyncio.get_running_loop().time()
        while True:
            try:
                port = SerialPort.open(cfg.port, self.stats.port)
            except PortError as exc:
                if not self.gaps.down(sink, "port_lost", str(exc)):
                    self._throttle.warning("open", "%s: %s", cfg.name, exc)
                await self._pause(sink, backoff.next_delay())
                continue
            splitter = self._splitter()
            self.stats.lines = splitter.stats
            try:
                if cfg.mode == "polled":
                    await self._polled(port, splitter, sink, backoff)
                else:
                    await self._streaming(port, splitter, sink, backoff)
            except PortError as exc:
                self.gaps.down(sink, "port_lost", str(exc))
            finally:
                port.close()
            self.stats.reopens += 1
            await self._pause(sink, backoff.next_delay())

    def _splitter(self) -> _Lines:
        cfg = self.config
        if cfg.preset == "toledo-continuous":
            lines = _ToledoLines(self._bad_frame)
            self.stats.frames = lines.framer.stats
            return lines
        return LineSplitter(end=b"\n" if cfg.line_end == "lf" else b"\r", max_line=cfg.max_line)

    def _bad_frame(self, bad: BadFrame) -> None:
        self.stats.bad_frames += 1
        self._throttle.warning("bad-frame", "%s: dropped a frame: %s", self.config.name, bad.reason)

    async def _pause(self, sink: Sink, delay: float) -> None:
        """Wait `delay` before reopening; polled, BAD readings at every poll meanwhile. A path
        that was missing and appears again (the adapter plugged back) ends the wait at once."""
        loop = asyncio.get_running_loop()
        path = self.config.port.path
        polled = self.config.mode == "polled"
        end = loop.time() + delay
        missing = not device_present(path)
        while (now := loop.time()) < end:
            if missing and device_present(path):
                return
            if polled and now >= self._next_poll:
                self._missed(sink, now)
                continue
            wake = min(end, now + 0.1) if missing else end
            if polled:
                wake = min(wake, self._next_poll)
            await asyncio.sleep(max(0.0, wake - now))

    def _missed(self, sink: Sink, now: float) -> None:
        """A poll that fell due while no request could be sent: BAD readings, as a timeout."""
        self.stats.missed_polls += 1
        _hand_over(sink, self._bad_batch())
        self._next_poll = max(self._next_poll + self.config.poll_interval_ms / 1000, now)

    async def _polled(
        self, port: SerialPort, splitter: _Lines, sink: Sink, backoff: Backoff
    ) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        command = (self.spec.command + cfg.command_end).encode(cfg.encoding)
        misses = 0
        while True:
            # Until the poll is due and no late answer can come: read and drop what arrives.
            while (now := loop.time()) < max(self._next_poll, self._clear_at):
                if now >= self._next_poll:
                    self._missed(sink, now)
                    continue
                until = self._next_poll if self._next_poll > now else self._clear_at
                await self._drain(port, splitter, until - now)
            self._next_poll = max(self._next_poll + cfg.poll_interval_ms / 1000, now)
            port.discard_input()
            self.stats.partial_lines += 1 if splitter.reset() else 0
            sent = loop.time()
            await port.write(command)
            batch = await self._await_answer(port, splitter)
            if batch is None:
                misses += 1
                self.stats.timeouts += 1
                self._clear_at = sent + max(cfg.late_answer_ms, cfg.answer_timeout_ms) / 1000
                if misses >= cfg.lost_after_timeouts:
                    self.gaps.down(sink, "no_answer", f"{misses} polls in a row without an answer")
                    if not port.still_present():
                        raise PortLostError(f"{cfg.port.path}: no longer names the device we hold")
                batch = self._bad_batch()
            else:
                misses = 0
                backoff.reset()
                self.gaps.up(sink)
            _hand_over(sink, batch)

    async def _drain(self, port: SerialPort, splitter: _Lines, seconds: float) -> None:
        """Read for `seconds` between polls: any answer now is late (or unsolicited): dropped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    for line in splitter.feed(await port.read()):
                        self._drop_late(line)

    def _drop_late(self, raw: bytes) -> None:
        text = raw.decode(self.config.encoding, errors="replace")
        if not text.strip():
            return
        try:
            self._parser.parse(text)
        except UnparsableAnswerError:
            self.stats.unparsable += 1
            return
        except DeviceError:
            pass
        self.stats.late_answers += 1
        self._throttle.warning(
            "late",
            "%s: dropped an answer that came after its poll's deadline: %r",
            self.config.name,
            text[:60],
        )

    async def _await_answer(self, port: SerialPort, splitter: _Lines) -> _Batch | None:
        """The first line that parses (or an error answer, as BAD readings); None at timeout."""
        try:
            async with asyncio.timeout(self.config.answer_timeout_ms / 1000):
                while True:
                    lines = splitter.feed(await port.read())
                    for k, line in enumerate(lines):
                        batch = self._line(line, polled=True)
                        if batch is not None:
                            for extra in lines[k + 1 :]:  # one request, one answer
                                self._drop_late(extra)
                            return batch
        except TimeoutError:
            if splitter.partial:
                self.stats.partial_lines += 1
            return None

    async def _streaming(
        self, port: SerialPort, splitter: _Lines, sink: Sink, backoff: Backoff
    ) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        start = (self.spec.command + cfg.command_end).encode(cfg.encoding)
        if self.spec.command:
            await port.write(start)
        silence = cfg.silence_timeout_ms / 1000
        deadline = loop.time() + silence
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await port.read()
            except TimeoutError:
                self.stats.timeouts += 1
                if cfg.on_silence == "gap":
                    self.gaps.down(sink, "silent", f"no value for {cfg.silence_timeout_ms} ms")
                if not port.still_present():
                    raise PortLostError(
                        f"{cfg.port.path}: silent and no longer names the device we hold"
                    ) from None
                if self.spec.command:
                    await port.write(start)  # a scale that was power-cycled stops streaming
                deadline = loop.time() + silence
                continue
            for line in splitter.feed(data):
                batch = self._line(line, polled=False)
                if batch is not None:
                    backoff.reset()
                    deadline = loop.time() + silence
                    self.gaps.up(sink)
                    _hand_over(sink, batch)

    def _line(self, raw: bytes, *, polled: bool) -> _Batch | None:
        cfg = self.config
        if self.tap is not None:
            self.tap(repr(raw))
        text = raw.decode(cfg.encoding, errors="replace")
        if not text.strip():
            return None
        try:
            answer = self._parser.parse(text)
        except UnexpectedUnitError as exc:
            self.stats.unparsable += 1
            self.stats.bad_unit += 1
            self._throttle.warning("unparsable", "%s: %s", cfg.name, exc)
            return None
        except UnparsableAnswerError as exc:
            self.stats.unparsable += 1
            self._throttle.warning("unparsable", "%s: %s", cfg.name, exc)
            return None
        except DeviceError as exc:
            self.stats.error_answers += 1
            self._throttle.warning("error-answer", "%s: %s", cfg.name, exc)
            return self._bad_batch() if polled else None
        self.stats.answers += 1
        return self._batch(answer, text)

    def _batch(self, answer: Answer, text: str) -> _Batch:
        ts, bits = self._clock.now()
        readings: list[Reading] = []
        problems = answer.problems or (None,) * len(answer.values)
        for (spec, value, answered_unit), problem in zip(answer.values, problems, strict=True):
            unit = answered_unit
            if spec.unit_group:
                # "S +" (overload) names no unit: flag the series the last answer named
                unit = answered_unit or self._last_unit.get(spec.metric, "")
                if not unit:
                    continue
                self._last_unit[spec.metric] = unit
            if value is None:
                readings.append(Reading(self._key(spec, unit), ts, 0.0, Quality.BAD | bits))
                self.stats.bad_readings += 1
            elif problem is not None:  # kept as read (when finite), flagged: it explains itself
                kept = value if problem == "out_of_range" else 0.0
                readings.append(Reading(self._key(spec, unit), ts, kept, Quality.BAD | bits))
                self.stats.out_of_range += 1
                self.stats.bad_readings += 1
            else:
                readings.append(Reading(self._key(spec, unit), ts, value, answer.quality | bits))
                if answer.quality == Quality.BAD:
                    self.stats.bad_readings += 1
        events: tuple[Event, ...] = ()
        event_cfg = self.config.event
        if event_cfg is not None and answer.attrs is not None:
            events = (Event(event_cfg.kind, ts, answer.attrs, answer.quality | bits),)
            self.stats.events += 1
        if self._tickets is not None:
            events += self._weigh(self._tickets, answer, text, ts, bits)
        self.stats.readings += len(readings)
        return _Batch(tuple(readings), events)

    def _weigh(
        self, builder: TicketBuilder, answer: Answer, text: str, ts: int, bits: int
    ) -> tuple[Event, ...]:
        """Feed the answer's weight to the ticket builder; the ticket, when it makes one."""
        t = builder.config
        weight: float | None = None
        tare: float | None = None
        unit = ""
        for spec, value, answered_unit in answer.values:
            if spec.metric == t.weight:
                weight = None if answer.quality == Quality.BAD else value
                unit = answered_unit or self._last_unit.get(spec.metric, "")
            elif t.tare_metric and spec.metric == t.tare_metric:
                tare = value
        code = ""
        if t.material_group:
            m = self.spec.pattern.match(text)
            code = (m.group(t.material_group) or "").strip() if m else ""
        stable = answer.quality == Quality.GOOD
        weighing = builder.feed(weight, stable=stable, unit=unit, tare=tare, code=code)
        if weighing is None:
            return ()
        self.stats.tickets += 1
        attrs = weighing.attrs(self.name, t.direction)
        return (Event(t.kind, ts, attrs, Quality.GOOD | bits),)

    def _bad_batch(self) -> _Batch:
        """BAD readings for every series this source makes: the explicit "no value" marker.
        A value whose unit comes from the answer goes to the unit last answered (none before
        the first answer)."""
        ts, bits = self._clock.now()
        keys: list[SeriesKey] = []
        for v in self.spec.values:
            if v.unit_group:
                unit = self._last_unit.get(v.metric)
                if unit is not None:
                    keys.append(self._key(v, unit))
            else:
                keys.append(self._key(v, v.unit))
        readings = tuple(Reading(key, ts, 0.0, Quality.BAD | bits) for key in keys)
        self.stats.bad_readings += len(readings)
        self.stats.readings += len(readings)
        return _Batch(readings)

    def _key(self, spec: AsciiValue, unit: str) -> SeriesKey:
        k = (spec.metric, unit)
        key = self._keys.get(k)
        if key is None:
            key = SeriesKey(spec.metric, unit, spec.site, spec.area, spec.process, spec.medium)
            self._keys[k] = key
        return key
