"""Modbus meters as an agent source: `firmware_bridge.ModbusSource` behind the `Source` protocol.

The bridge polls and decodes; this adapter hands each reading to the sink. Modbus readings are
taken "now", so the agent's clock stamps them (`ts_ms=None`), which also flags untrusted time.
Nothing to acknowledge: a meter cannot redeliver.
"""

from __future__ import annotations

from pathlib import Path

from agent.sources import Sink
from firmware_bridge.modbus_config import ModbusConfig
from firmware_bridge.modbus_source import ModbusSource
from firmware_bridge.source import Delivery, SystemClock


class ModbusAgentSource:
    def __init__(self, config: ModbusConfig, *, base_dir: Path | None = None) -> None:
        self.name = config.name
        # the bridge's own stamps are replaced by the agent's in run(); any clock will do
        self.bridge = ModbusSource(config, clock=SystemClock(), base_dir=base_dir)

    async def run(self, sink: Sink) -> None:
        async def emit(delivery: Delivery) -> None:
            for r in delivery.readings:
                sink.add(sink.series_id(r.series), r.value, r.quality)

        await self.bridge.run(emit)
