"""The ASCII instrument source: one port, one instrument, polled or streaming.

Polled: every `poll_interval_ms`, drop stale input, send the command, wait up to
`answer_timeout_ms` for a line that parses. Lines that do not parse are counted (and logged at a
throttled rate) while waiting; a timeout or an error answer yields BAD readings, so the missing
value is explicit. Streaming: send the start command once (if any), then parse every line that
arrives; unparsable lines are counted and skipped.

After `lost_after_timeouts` timeouts in a row (or `silence_timeout_ms` of silence when
streaming) the source checks that the port's path still names the device it holds; if not (an
adapter replugged under the same by-id name), it reopens. EIO/ENODEV reopen at once. Reopening
uses capped jittered backoff. Nothing here raises out of `run()` except ConfigError at start.

Readings and events (weighbridge tickets) are stamped by the `Stamper` given (the agent's clock)
and handed to the sink in the order the instrument produced them. Nothing to acknowledge: an
instrument cannot redeliver.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.sources import Sink, Stamper, add_readings
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
    DeviceError,
    PortError,
    PortLostError,
    UnparsableAnswerError,
)
from firmware_bridge.port import PortStats, SerialPort
from wire.models import Event, Quality, Reading, SeriesKey


@dataclass(slots=True)
class AsciiStats:
    port: PortStats = field(default_factory=PortStats)
    lines: LineStats = field(default_factory=LineStats)
    answers: int = 0
    unparsable: int = 0
    error_answers: int = 0
    timeouts: int = 0
    partial_lines: int = 0  # unfinished lines dropped at a timeout or before a new request
    readings: int = 0
    bad_readings: int = 0
    events: int = 0
    reopens: int = 0


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

    async def run(self, sink: Sink) -> None:
        cfg = self.config
        backoff = Backoff(cfg.reopen_initial_ms / 1000, cfg.reopen_max_ms / 1000, self._rng)
        while True:
            try:
                port = SerialPort.open(cfg.port, self.stats.port)
            except PortError as exc:
                self._throttle.warning("open", "%s: %s", cfg.name, exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            splitter = LineSplitter(
                end=b"\n" if cfg.line_end == "lf" else b"\r", max_line=cfg.max_line
            )
            self.stats.lines = splitter.stats
            try:
                if cfg.mode == "polled":
                    await self._polled(port, splitter, sink, backoff)
                else:
                    await self._streaming(port, splitter, sink, backoff)
            except PortError as exc:
                self._throttle.warning("lost", "%s: %s", cfg.name, exc)
            finally:
                port.close()
            self.stats.reopens += 1
            await asyncio.sleep(backoff.next_delay())

    async def _polled(
        self, port: SerialPort, splitter: LineSplitter, sink: Sink, backoff: Backoff
    ) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        command = (self.spec.command + cfg.command_end).encode(cfg.encoding)
        misses = 0
        next_at = loop.time()
        while True:
            port.discard_input()
            self.stats.partial_lines += 1 if splitter.reset() else 0
            await port.write(command)
            batch = await self._await_answer(port, splitter)
            if batch is None:
                misses += 1
                self.stats.timeouts += 1
                if misses >= cfg.lost_after_timeouts and not port.still_present():
                    raise PortLostError(f"{cfg.port.path}: no longer names the device we hold")
                batch = self._bad_batch()
            else:
                misses = 0
                backoff.reset()
            _hand_over(sink, batch)
            next_at = max(next_at + cfg.poll_interval_ms / 1000, loop.time())
            await asyncio.sleep(next_at - loop.time())

    async def _await_answer(self, port: SerialPort, splitter: LineSplitter) -> _Batch | None:
        """The first line that parses (or an error answer, as BAD readings); None at timeout."""
        try:
            async with asyncio.timeout(self.config.answer_timeout_ms / 1000):
                while True:
                    for line in splitter.feed(await port.read()):
                        batch = self._line(line, polled=True)
                        if batch is not None:
                            return batch
        except TimeoutError:
            if splitter.partial:
                self.stats.partial_lines += 1
            return None

    async def _streaming(
        self, port: SerialPort, splitter: LineSplitter, sink: Sink, backoff: Backoff
    ) -> None:
        cfg = self.config
        if self.spec.command:
            await port.write((self.spec.command + cfg.command_end).encode(cfg.encoding))
        while True:
            try:
                async with asyncio.timeout(cfg.silence_timeout_ms / 1000):
                    data = await port.read()
            except TimeoutError:
                self.stats.timeouts += 1
                if not port.still_present():
                    raise PortLostError(
                        f"{cfg.port.path}: silent and no longer names the device we hold"
                    ) from None
                continue
            for line in splitter.feed(data):
                batch = self._line(line, polled=False)
                if batch is not None:
                    backoff.reset()
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
        except UnparsableAnswerError as exc:
            self.stats.unparsable += 1
            self._throttle.warning("unparsable", "%s: %s", cfg.name, exc)
            return None
        except DeviceError as exc:
            self.stats.error_answers += 1
            self._throttle.warning("error-answer", "%s: %s", cfg.name, exc)
            return self._bad_batch() if polled else None
        self.stats.answers += 1
        return self._batch(answer)

    def _batch(self, answer: Answer) -> _Batch:
        ts, bits = self._clock.now()
        readings: list[Reading] = []
        for spec, value, answered_unit in answer.values:
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
            else:
                readings.append(Reading(self._key(spec, unit), ts, value, answer.quality | bits))
                if answer.quality == Quality.BAD:
                    self.stats.bad_readings += 1
        events: tuple[Event, ...] = ()
        event_cfg = self.config.event
        if event_cfg is not None and answer.attrs is not None:
            events = (Event(event_cfg.kind, ts, answer.attrs, answer.quality | bits),)
            self.stats.events += 1
        self.stats.readings += len(readings)
        return _Batch(tuple(readings), events)

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
