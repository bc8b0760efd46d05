"""Sources: the things that produce readings, all behind one small interface.

A source is an object with a `name` and an `async run(sink)` coroutine that runs until its data
ends or it is cancelled (the runtime gives each source its own named task). It talks to the rest
of the agent only through the `Sink` it is given:

- `series_id(key)` once per series (cheap, in memory; persisted with the next commit);
- `add(series_id, value, quality=0, ts_ms=None)` per reading: an append, never a write; the agent
  stamps the time from its clock (and flags untrusted time) unless the source knows better;
- `await committed()` when the source must not acknowledge upstream (MQTT QoS 1, a Modbus
  sequence register) before the readings are durable;
- `last_value(series_id)` to resume a counter after a restart.

A source that fails raises; the runtime stops the agent with that error (systemd restarts it),
so a source should retry its own transient faults (a serial adapter that re-enumerates, a
broker that restarts) with backoff and raise only for what a restart might fix. Adding a source
type: a struct in `agent.config.SourceConfig`, a module here, a branch in `build_source`.
"""

from __future__ import annotations

from typing import Protocol

from agent.config import SourceConfig, TestSourceConfig
from wire.models import SeriesKey


class Sink(Protocol):
    def series_id(self, key: SeriesKey) -> int: ...
    def add(
        self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None
    ) -> None: ...
    def last_value(self, series_id: int) -> float | None: ...
    async def committed(self) -> None: ...


class Source(Protocol):
    name: str

    async def run(self, sink: Sink) -> None: ...


def build_source(config: SourceConfig) -> Source:
    """The source a config table describes."""
    if isinstance(config, TestSourceConfig):
        from agent.sources.test import TestSource

        return TestSource(config)
    raise TypeError(f"no source for {type(config).__name__}")  # pragma: no cover
