"""The synthetic source (config `type = "test"`): meter-like counters at a fixed rate, so the
agent runs before real hardware.

Each tick adds `step` to every series' counter and hands one reading per series to the sink. On
restart a counter resumes from the last *committed* value, like a meter register that kept
counting: so a run that was killed shows, in the cloud, a contiguous sequence per series with
no value twice, which is exactly what the crash tests check.

Ticks follow the monotonic clock (no drift over long runs); a source that fell more than a
second behind skips ahead instead of bursting to catch up.
"""

from __future__ import annotations

import asyncio
import time

from agent.config import SyntheticSourceConfig
from agent.sources import Sink
from wire.models import SeriesKey


class SyntheticSource:
    def __init__(self, config: SyntheticSourceConfig) -> None:
        self.config = config
        self.name = config.name

    def keys(self) -> list[SeriesKey]:
        c = self.config
        names = [c.metric] if c.series == 1 else [f"{c.metric}_{i}" for i in range(c.series)]
        return [SeriesKey(n, c.unit, c.site, c.area, c.process, c.medium) for n in names]

    async def run(self, sink: Sink) -> None:
        c = self.config
        ids = [sink.series_id(k) for k in self.keys()]
        values = [sink.last_value(sid) or 0.0 for sid in ids]
        period = 1.0 / c.rate_hz
        due = time.monotonic()
        made = 0
        while c.max_readings == 0 or made < c.max_readings:
            for j, sid in enumerate(ids):
                values[j] += c.step
                sink.add(sid, values[j])
            made += 1
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                if delay < -1.0:
                    due = time.monotonic()
                await asyncio.sleep(0)  # let the flusher and uplink run
