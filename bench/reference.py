"""The reference data every codec figure is measured on (docs/benchmarks.md).

10,000 readings from 50 meter-like series at 1 Hz with 0.1 resolution: half cumulative counters
(energy, volume), half gauges (power, flow, temperature) wandering around a level. Seeded, so every
run and every machine measures the same bytes.
"""

from __future__ import annotations

import random

from wire.models import GENESIS, Batch, ClockReport, ClockState, Counters, SeriesData, SeriesKey

START_MS = 1_790_000_000_000
MEDIA = ("electricity", "water", "gas")
PROCESSES = ("leaching", "solvent-extraction", "precipitation", "calcination", "utilities")


def reference_series(n_series: int = 50, seconds: int = 200, seed: int = 1) -> list[SeriesData]:
    rng = random.Random(seed)
    out = []
    for i in range(n_series):
        medium = MEDIA[i % len(MEDIA)]
        counter = i % 2 == 0
        key = SeriesKey(
            metric=f"{'energy' if counter else 'power'}_{i:02d}",
            unit=("kWh" if counter else "kW") if medium == "electricity" else "m3",
            site="baotou-1",
            area=f"hall-{i % 4}",
            process=PROCESSES[i % len(PROCESSES)],
            medium=medium,
        )
        s = SeriesData(key)
        level = rng.randint(1_000, 999_999)  # tenths
        for t in range(seconds):
            level += rng.randint(0, 5) if counter else rng.randint(-3, 3)
            s.append(START_MS + t * 1000, level / 10)
        out.append(s)
    return out


def reference_batch(n_series: int = 50, seconds: int = 200, seq: int = 1) -> Batch:
    return Batch(
        device_id="gw-bench-0001",
        seq=seq,
        prev=GENESIS,
        boot_id="0f3c9a3e5b7d4e21",
        series=reference_series(n_series, seconds),
        counters=Counters(),
        clock=ClockReport(ClockState.SYNCED, 0),
    )
