"""Sources: the things that produce readings, all behind one contract.

A source is an object with a `name` and an `async run(sink)` coroutine that runs until its data
ends or it is cancelled (the runtime gives each source its own named task). It talks to the rest
of the agent only through the `Sink` it is given:

- `series_id(key)` once per series (cheap, in memory; persisted with the next commit);
- `add(series_id, value, quality=0, ts_ms=None)` per reading: an append, never a write; the agent
  stamps the time from its clock (and flags untrusted time) unless the source knows better;
- `add_event(event)` per event (a weighbridge ticket): committed in the same group as readings,
  sent in the same batches;
- `await committed()` when the source must not acknowledge upstream (MQTT QoS 1, our MCU's ACK)
  before the readings added so far are durable;
- `last_value(series_id)` to resume a counter after a restart;
- `room()`: how many readings `add` takes before it refuses (and counts) them, for a source
  that can leave data with its sender instead.

A source stamping its own readings uses the `Stamper` it is built with: in the agent that is the
agent's clock (`agent.clock.AgentClock`), whose stamps carry the untrusted-time flag and epoch the
buffer corrects later; tools and tests use `HostStamper`. A source may have a `stats` attribute,
a dataclass of counters (nested dataclasses and dicts allowed); the metrics endpoint exports it
(`edge_agent_source_stats_total`). A source may have a `tap` attribute (`None`, or a callable
taking one line of text): `edge-agent probe` sets it, and the source then passes it the raw data
each reading came from (a Modbus answer's registers, an ASCII line, an MQTT topic and payload,
an MCU's decoded reading frame, an OPC UA value and its status code) before handing over
those readings.

The sources: `modbus` (meters polled through pymodbus), `ascii` (line-based instruments), `mcu`
(our firmware, exactly once through `agent.watermarks`), `mqtt/` (a broker's topics), `opcua/`
(an OPC UA server's variables) and `synthetic` (meter-like counters, config `type = "test"`).
The serial protocols are `firmware_bridge`'s sans-I/O codecs; the run loops, which own the I/O,
live here.

A source that fails raises; the runtime stops the agent with that error (systemd restarts it),
so a source retries its own transient faults (a serial adapter that re-enumerates, a broker
that restarts) with backoff and raises only for what a restart might fix. Adding a source type:
a config struct in `agent.config.SourceConfig` (in a module that does no I/O), a module here,
a branch in `agent.sources.registry.build_source`.

This module is imported by `agent.config` (through `agent.sources.mqtt.config`): it imports
nothing but `wire`, so loading the config schema loads no I/O library.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from wire.models import Event, Reading, SeriesKey


class Sink(Protocol):
    def series_id(self, key: SeriesKey) -> int: ...
    def add(
        self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None
    ) -> None: ...
    def add_event(self, event: Event) -> None: ...
    def room(self) -> int: ...
    def last_value(self, series_id: int) -> float | None: ...
    async def committed(self) -> None: ...


class Source(Protocol):
    name: str

    async def run(self, sink: Sink) -> None: ...


class Stamper(Protocol):
    """Stamps readings: `now()` is (UTC epoch ms, quality bits to OR into the reading).

    The bits are non-zero while the stamping clock cannot be trusted (TIME_UNTRUSTED plus the
    agent clock's epoch); `agent.clock.AgentClock` has this shape.
    """

    def now(self) -> tuple[int, int]: ...


class HostStamper:
    """The host's wall clock, taken as trusted (no bits). For tools, tests and benchmarks."""

    def now(self) -> tuple[int, int]:
        return time.time_ns() // 1_000_000, 0


def add_readings(sink: Sink, readings: Iterable[Reading]) -> None:
    """Hand readings a source built whole (key, stamp, value, quality) to `sink`, in order."""
    for r in readings:
        sink.add(sink.series_id(r.series), r.value, r.quality, r.ts_ms)
