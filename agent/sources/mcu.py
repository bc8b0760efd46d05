"""Our MCU firmware as an agent source: `firmware_bridge.McuSource` behind `Source`.

Readings keep the time the bridge mapped from the MCU's clock. The firmware deletes a reading
only when acknowledged, so acknowledgement waits for the buffer: each delivery is queued to one
acker task that awaits `sink.committed()` and only then calls `delivery.ack()`. Deliveries are
acknowledged in order, and the reader never waits for a flush (the MCU's window bounds what is in
flight).

Positions for exactly-once across restarts go to `watermarks` (a `FileWatermarks` by default);
storing them in the buffer's own transaction would close the last duplicate window.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.sources import Sink
from firmware_bridge.mcu_source import McuConfig, McuSource
from firmware_bridge.source import Clock, Delivery, SystemClock
from firmware_bridge.watermarks import FileWatermarks, Watermarks


class McuAgentSource:
    def __init__(
        self,
        config: McuConfig,
        *,
        watermarks: Watermarks | None = None,
        state_dir: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = config.name
        if watermarks is None:
            base = state_dir if state_dir is not None else Path()
            watermarks = FileWatermarks(base / f"{config.name}.mcu-watermarks.json")
        self.bridge = McuSource(config, clock=clock or SystemClock(), watermarks=watermarks)

    async def run(self, sink: Sink) -> None:
        pending: asyncio.Queue[Delivery] = asyncio.Queue()

        async def emit(delivery: Delivery) -> None:
            for r in delivery.readings:
                sink.add(sink.series_id(r.series), r.value, r.quality, r.ts_ms)
            pending.put_nowait(delivery)

        async def acker() -> None:
            while True:
                delivery = await pending.get()
                await sink.committed()
                delivery.ack()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(acker(), name=f"{self.name} acker")
            tg.create_task(self.bridge.run(emit), name=f"{self.name} bridge")
