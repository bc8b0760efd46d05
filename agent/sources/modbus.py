"""Modbus meters as an agent source: `firmware_bridge.ModbusSource` behind the `Source` protocol.

The bridge polls and decodes; this adapter hands each reading to the sink. The bridge stamps a
poll's readings with the clock it is given, the agent's, so untrusted time is flagged (with the
clock's epoch, corrected later by the buffer) exactly as if the agent had stamped them.
Nothing to acknowledge: a meter cannot redeliver.
"""

from __future__ import annotations

from agent.sources import Sink
from firmware_bridge.modbus_config import ModbusConfig
from firmware_bridge.modbus_source import ModbusSource, ModbusStats
from firmware_bridge.source import Clock, Delivery


class ModbusAgentSource:
    def __init__(self, config: ModbusConfig, *, clock: Clock) -> None:
        self.name = config.name
        self.bridge = ModbusSource(config, clock=clock)

    @property
    def stats(self) -> ModbusStats:
        return self.bridge.stats

    async def run(self, sink: Sink) -> None:
        async def emit(delivery: Delivery) -> None:
            for r in delivery.readings:
                sink.add(sink.series_id(r.series), r.value, r.quality, r.ts_ms)

        await self.bridge.run(emit)
