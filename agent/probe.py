"""`edge-agent probe`: read each configured source once and show what it read, for commissioning
a meter (is the register map right, does the broker's payload map?) without the buffer, the
uplink or the cloud.

Each source runs alone against a `ProbeSink` until it has handed over one round of readings
(the readings stop coming for `SETTLE_S`, or a series comes round a second time) or `timeout_s`
passes. What it read is printed with the raw data it came from: a source that supports it gets a
`tap` (a callable taking one line of text: the registers of a Modbus answer, an ASCII line, an
MQTT topic and payload) set before it runs; the lines it tapped up to the round's last reading
follow the readings.

What a probe never does, so it can run beside a running agent: it opens no buffer, acknowledges
nothing upstream (`committed()` never returns, so an MCU keeps its readings and an MQTT message
is not PUBACKed), and an MQTT source connects under a client id of its own
(`tierless-probe-<pid>`), accepting retained messages (the last value a sensor published).
Readings are stamped by the host clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from agent.config import Config, SourceConfig
from agent.errors import ConfigError
from agent.sources import HostStamper, Source
from agent.sources.mqtt.config import MqttSourceConfig
from agent.sources.registry import SourceContext, build_source
from agent.watermarks import MemoryWatermarks
from wire.models import TIME_UNTRUSTED, Event, Quality, SeriesKey

SETTLE_S = 0.5  # no new reading for this long after the first: the round is complete


@dataclass(slots=True)
class ProbeSink:
    """A `Sink` that only remembers what it was given (with the raw lines tapped so far)."""

    keys: list[SeriesKey] = field(default_factory=list)
    readings: list[tuple[SeriesKey, float, int]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)  # every line tapped
    round_raw: int = 0  # how many of them the round's readings and events came from
    seen_twice: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _seen: set[int] = field(default_factory=set)
    _kinds: set[str] = field(default_factory=set)

    def tap(self, line: str) -> None:
        self.raw.append(line)

    def series_id(self, key: SeriesKey) -> int:
        try:
            return self.keys.index(key)
        except ValueError:
            self.keys.append(key)
            return len(self.keys) - 1

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        if self.seen_twice or series_id in self._seen:
            self.seen_twice = True
        else:
            self._seen.add(series_id)
            self.readings.append((self.keys[series_id], value, quality))
            self.round_raw = len(self.raw)
        self.changed.set()

    def add_event(self, event: Event) -> None:
        if self.seen_twice or event.kind in self._kinds:
            self.seen_twice = True
        else:
            self._kinds.add(event.kind)
            self.events.append(event)
            self.round_raw = len(self.raw)
        self.changed.set()

    def room(self) -> int:
        return 1_000_000

    def last_value(self, series_id: int) -> float | None:
        return None

    async def committed(self) -> None:
        await asyncio.Event().wait()  # never: a probe acknowledges nothing upstream


def probe_config(source: SourceConfig) -> SourceConfig:
    """The source's config as a probe runs it (see the module docstring)."""
    if isinstance(source, MqttSourceConfig):
        return msgspec.structs.replace(
            source,
            client_id=f"tierless-probe-{os.getpid()}",
            session_expiry_s=60,
            retained="accept",
        )
    return source


def quality_name(quality: int) -> str:
    base = Quality(quality & 3).name.lower() if quality & 3 in (0, 1, 2) else str(quality & 3)
    return base + (" untrusted-time" if quality & TIME_UNTRUSTED else "")


async def probe_source(source: Source, timeout_s: float) -> ProbeSink:
    """Run `source` until it has handed over one round of readings, or `timeout_s` passed."""
    sink = ProbeSink()
    if hasattr(source, "tap"):
        source.tap = sink.tap
    task = asyncio.create_task(source.run(sink), name=f"probe {source.name}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while not task.done() and not sink.seen_twice:
            got = bool(sink.readings or sink.events)
            wait = deadline - loop.time()
            if got:
                wait = min(wait, SETTLE_S)
            if wait <= 0:
                break
            sink.changed.clear()
            try:
                async with asyncio.timeout(wait):
                    await sink.changed.wait()
            except TimeoutError:
                if got:
                    break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return sink


def describe(name: str, sink: ProbeSink) -> list[str]:
    """The lines `edge-agent probe` prints for one source."""
    if not sink.readings and not sink.events:
        last = f" (raw: {sink.raw[-1]})" if sink.raw else ""
        return [f"{name}: nothing read{last}"]
    lines = [f"{name}:"]
    for key, value, quality in sink.readings:
        unit = f" {key.unit}" if key.unit else ""
        lines.append(f"  {key.metric} = {value:g}{unit}  [{quality_name(quality)}]")
    for event in sink.events:
        attrs = " ".join(f"{k}={v}" for k, v in event.attrs)
        lines.append(f"  event {event.kind}: {attrs}  [{quality_name(event.quality)}]")
    # The raw data of the round, in the order it came (a source may read several blocks
    # before it hands over the readings they hold).
    lines += [f"  raw: {text}" for text in sink.raw[: sink.round_raw]]
    return lines


async def probe(
    config: Config,
    *,
    only: str | None,
    timeout_s: float,
    say: Callable[[str], None],
) -> int:
    """Probe the configured sources (or the one named `only`); the count that read nothing."""
    chosen = [s for s in config.sources if only is None or s.name == only]
    if not chosen:
        names = ", ".join(s.name for s in config.sources) or "none"
        raise ConfigError([f"no source named {only!r} (the config has: {names})"])
    context = SourceContext(clock=HostStamper(), watermarks=MemoryWatermarks())
    empty = 0
    for source_config in chosen:
        source = build_source(probe_config(source_config), context)
        sink = await probe_source(source, timeout_s)
        if not sink.readings and not sink.events:
            empty += 1
        for line in describe(source.name, sink):
            say(line)
    return empty
