"""Our MCU firmware as an agent source: `firmware_bridge.McuSource` behind `Source`.

Readings keep the time the bridge mapped from the MCU's clock (through the agent's clock, so an
untrusted gateway clock is flagged and corrected like any reading). The firmware deletes a reading
only when acknowledged, so acknowledgement waits for the buffer: each delivery is queued to one
acker task that awaits `sink.committed()` and only then calls `delivery.ack()`. Deliveries are
acknowledged in order, and the reader never waits for a flush (the MCU's window bounds what is in
flight).

Positions: with the agent's `BufferWatermarks` (what `build_source` passes) each delivery's
position is staged right after its readings, so it is committed in the same transaction as they
are: exactly once across crashes (see `agent.watermarks`). Any other `Watermarks` (a
`FileWatermarks` when none is given) is only written after the acknowledgement, which leaves the
duplicate window that store documents.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.sources import Sink
from agent.watermarks import BufferWatermarks
from firmware_bridge.mcu_source import McuConfig, McuSource, McuStats
from firmware_bridge.source import Clock, Delivery
from firmware_bridge.watermarks import FileWatermarks, Watermarks


class McuAgentSource:
    def __init__(
        self,
        config: McuConfig,
        *,
        clock: Clock,
        watermarks: Watermarks | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.name = config.name
        if watermarks is None:
            base = state_dir if state_dir is not None else Path()
            watermarks = FileWatermarks(base / f"{config.name}.mcu-watermarks.json")
        self._staged = watermarks if isinstance(watermarks, BufferWatermarks) else None
        self.bridge = McuSource(config, clock=clock, watermarks=watermarks)

    @property
    def stats(self) -> McuStats:
        return self.bridge.stats

    async def run(self, sink: Sink) -> None:
        pending: asyncio.Queue[Delivery] = asyncio.Queue()

        async def emit(delivery: Delivery) -> None:
            for r in delivery.readings:
                sink.add(sink.series_id(r.series), r.value, r.quality, r.ts_ms)
            if self._staged is not None and delivery.position is not None:
                self._staged.stage(delivery.position)
            pending.put_nowait(delivery)

        async def acker() -> None:
            while True:
                delivery = await pending.get()
                await sink.committed()
                delivery.ack()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(acker(), name=f"{self.name} acker")
            tg.create_task(self.bridge.run(emit), name=f"{self.name} bridge")
