"""Sources: the things that produce readings, all behind one small interface.

A source is an object with a `name` and an `async run(sink)` coroutine that runs until its data
ends or it is cancelled (the runtime gives each source its own named task). It talks to the rest
of the agent only through the `Sink` it is given:

- `series_id(key)` once per series (cheap, in memory; persisted with the next commit);
- `add(series_id, value, quality=0, ts_ms=None)` per reading: an append, never a write; the agent
  stamps the time from its clock (and flags untrusted time) unless the source knows better;
- `add_event(event)` per event (a weighbridge ticket): committed in the same group as readings,
  sent in the same batches;
- `await committed()` when the source must not acknowledge upstream (MQTT QoS 1, a Modbus
  sequence register) before the readings are durable;
- `last_value(series_id)` to resume a counter after a restart;
- `room()`: how many readings `add` takes before it refuses (and counts) them, for a source
  that can leave data with its sender instead.

A source stamping its own readings should use the `SourceContext.clock` it is built with (the
agent's clock): its stamps carry the untrusted-time flag and epoch the buffer corrects later. A
source may have a `stats` attribute, a dataclass of counters (nested dataclasses and dicts
allowed); the metrics endpoint exports it (`edge_agent_source_counter_total`).

A source that fails raises; the runtime stops the agent with that error (systemd restarts it),
so a source should retry its own transient faults (a serial adapter that re-enumerates, a
broker that restarts) with backoff and raise only for what a restart might fix. Adding a source
type: a struct in `agent.config.SourceConfig`, a module here, a branch in `build_source`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent.clock import AgentClock
from agent.watermarks import BufferWatermarks
from wire.models import Event, SeriesKey

if TYPE_CHECKING:  # agent.config imports source config modules from this package
    from agent.config import SourceConfig


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


@dataclass(frozen=True, slots=True)
class SourceContext:
    """The agent's collaborators a source may need; the runtime builds one for all sources."""

    clock: AgentClock
    watermarks: BufferWatermarks  # MCU positions, committed with the readings
    state_dir: Path | None = None  # where a source may keep small state files (MQTT)


def build_source(config: SourceConfig, context: SourceContext) -> Source:
    """The source a config table describes (the config is validated: this does not fail)."""
    from agent.config import (
        AsciiSourceConfig,
        McuSourceConfig,
        ModbusSourceConfig,
        TestSourceConfig,
    )
    from agent.sources.mqtt_config import MqttSourceConfig

    if isinstance(config, TestSourceConfig):
        from agent.sources.test import TestSource

        return TestSource(config)
    if isinstance(config, ModbusSourceConfig):
        from agent.sources.modbus import ModbusAgentSource

        return ModbusAgentSource(config, clock=context.clock)
    if isinstance(config, AsciiSourceConfig):
        from agent.sources.ascii import AsciiAgentSource

        return AsciiAgentSource(config, clock=context.clock)
    if isinstance(config, McuSourceConfig):
        from agent.sources.mcu import McuAgentSource

        return McuAgentSource(config, clock=context.clock, watermarks=context.watermarks)
    if isinstance(config, MqttSourceConfig):
        from agent.sources.mqtt import MqttSource

        return MqttSource(config, clock=context.clock, state_dir=context.state_dir)
    raise TypeError(f"no source for {type(config).__name__}")  # pragma: no cover
