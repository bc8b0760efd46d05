"""ASCII instruments as an agent source: `firmware_bridge.AsciiSource` behind `Source`.

Readings are stamped by the agent's clock when added. Events (weighbridge tickets) are counted in
`events_dropped` until the agent's `Sink` has a way to take events.
"""

from __future__ import annotations

from agent.sources import Sink
from firmware_bridge.ascii_protocol import AsciiConfig
from firmware_bridge.ascii_source import AsciiSource
from firmware_bridge.source import Delivery, SystemClock


class AsciiAgentSource:
    def __init__(self, config: AsciiConfig) -> None:
        self.name = config.name
        self.bridge = AsciiSource(config, clock=SystemClock())
        self.events_dropped = 0

    async def run(self, sink: Sink) -> None:
        async def emit(delivery: Delivery) -> None:
            for r in delivery.readings:
                sink.add(sink.series_id(r.series), r.value, r.quality)
            self.events_dropped += len(delivery.events)

        await self.bridge.run(emit)
