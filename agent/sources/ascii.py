"""ASCII instruments as an agent source: `firmware_bridge.AsciiSource` behind `Source`.

Readings and events (weighbridge tickets) are stamped by the agent's clock, which the bridge is
given, and handed to the sink as they are. Nothing to acknowledge: an instrument cannot redeliver.
"""

from __future__ import annotations

from agent.sources import Sink
from firmware_bridge.ascii_protocol import AsciiConfig
from firmware_bridge.ascii_source import AsciiSource, AsciiStats
from firmware_bridge.source import Clock, Delivery


class AsciiAgentSource:
    def __init__(self, config: AsciiConfig, *, clock: Clock) -> None:
        self.name = config.name
        self.bridge = AsciiSource(config, clock=clock)

    @property
    def stats(self) -> AsciiStats:
        return self.bridge.stats

    async def run(self, sink: Sink) -> None:
        async def emit(delivery: Delivery) -> None:
            for r in delivery.readings:
                sink.add(sink.series_id(r.series), r.value, r.quality, r.ts_ms)
            for event in delivery.events:
                sink.add_event(event)

        await self.bridge.run(emit)
