"""A synthetic plant: `days` days of counters read every 15 minutes and weighbridge tickets, with
faults planted where asked. Deterministic for a seed.

Two lines (line1 on gateway gw-a, line2 on gateway gw-b) produce 2 t/h (±5 %) from 06:00 to 22:00
on weekdays, a ticket per hour of production; nothing at night or at weekends. Consumption per
15 minutes is the idle rate, or the production rate plus a per-tonne part, times a noise of 5 %.

The faults, placed at fractions of the window so a smaller or bigger plant keeps them apart:
- night_leak: line1 water +2 m³/h at every hour from 50 % of the window to its end.
- idle_compressor: the compressor draws 25 kWh/h in idle hours for 3 days from 65 %.
- stuck_meter: the gas meter repeats one value for 24 h from 83 % (12:00), then counts on.
- silent_gateway: gw-b sends nothing from 08:00 to 14:00 on the day at 33 %.
- step: line2 electricity per tonne goes from 150 to 195 kWh/t from 60 % on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cloud.storage.reads import EventRecord, SeriesInfo

HOUR = 3_600_000
DAY = 24 * HOUR
STEP = 15 * 60_000
START_MS = 1_772_409_600_000  # 2026-03-02 00:00 UTC, a Monday
FAULTS = ("night_leak", "idle_compressor", "stuck_meter", "silent_gateway", "step")


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    kind: str  # the finding kind that must report it
    subject: str  # the finding's subject
    from_ms: int
    to_ms: int


@dataclass(frozen=True, slots=True)
class _Meter:
    info: SeriesInfo
    idle: float  # per hour
    running: float  # per hour while producing, before the per-tonne part
    per_tonne: float


@dataclass(slots=True)
class Plant:
    days: int
    series: list[SeriesInfo] = field(default_factory=list)
    rows: dict[int, list[tuple[int, float, int]]] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @property
    def from_ms(self) -> int:
        return START_MS

    @property
    def to_ms(self) -> int:
        return START_MS + self.days * DAY


def _info(sid: int, device: str, metric: str, unit: str, process: str, medium: str) -> SeriesInfo:
    return SeriesInfo(sid, device, metric, unit, "plant", "hall", process, medium)


def generate(days: int = 30, faults: tuple[str, ...] = FAULTS, seed: int = 7) -> Plant:
    rnd = random.Random(seed)
    meters = [
        _Meter(_info(1, "gw-a", "main_energy", "kW.h", "line1", "electricity"), 40, 40, 150),
        _Meter(_info(2, "gw-a", "compressor_energy", "kW.h", "line1", "electricity"), 1, 30, 0),
        _Meter(_info(3, "gw-a", "water_volume", "m3", "line1", "water"), 0.2, 5, 0),
        _Meter(_info(4, "gw-a", "gas_volume", "m3", "line1", "gas"), 0.5, 10, 0),
        _Meter(_info(5, "gw-b", "main_energy", "kW.h", "line2", "electricity"), 40, 40, 150),
        _Meter(_info(6, "gw-b", "water_volume", "m3", "line2", "water"), 0.3, 4, 0),
    ]
    plant = Plant(days, [m.info for m in meters])
    end = plant.to_ms

    def day_at(fraction: float) -> int:
        return START_MS + round(fraction * days) * DAY

    leak_from = day_at(0.5)
    compressor = (day_at(0.65), day_at(0.65) + 3 * DAY)
    stuck = (day_at(0.83) + 12 * HOUR, day_at(0.83) + 36 * HOUR)
    silence = (day_at(0.33) + 8 * HOUR, day_at(0.33) + 14 * HOUR)
    step_from = day_at(0.6)
    planted = {
        "night_leak": Fault("night_leak", "night_flow", "gw-a/water_volume", leak_from, end),
        "idle_compressor": Fault(
            "idle_compressor", "baseload", "gw-a/compressor_energy", *compressor
        ),
        "stuck_meter": Fault("stuck_meter", "stuck", "gw-a/gas_volume", *stuck),
        "silent_gateway": Fault("silent_gateway", "silent", "gw-b", *silence),
        "step": Fault("step", "step", "line2/electricity", step_from, end),
    }
    plant.faults = [planted[f] for f in faults]
    on = set(faults)

    # Production per hour and line: tonnes, and a ticket at half past.
    tonnes: dict[tuple[str, int], float] = {}
    ticket = 0
    for h in range(days * 24):
        start = START_MS + h * HOUR
        weekday = (h // 24) % 7
        if weekday < 5 and 6 <= h % 24 < 22:
            for line in ("line1", "line2"):
                t = 2.0 * (1 + rnd.gauss(0, 0.05))
                tonnes[(line, h)] = t
                ticket += 1
                attrs: dict[str, str | int | float | bool] = {
                    "net_kg": round(t * 1000, 1),
                    "material": f"product-{line}",
                    "process": line,
                    "direction": "out",
                    "ticket": ticket,
                }
                plant.events.append(
                    EventRecord(
                        "scale-1", ticket, "weighbridge_ticket", start + HOUR // 2, 0, attrs
                    )
                )

    for m in meters:
        level = 1000.0
        points: list[tuple[int, float, int]] = []
        sid, device = m.info.series_id, m.info.device_id
        for q in range(days * 24 * 4):
            t0 = START_MS + q * STEP
            h = q // 4
            produced = tonnes.get((m.info.process, h), 0.0)
            per_tonne = m.per_tonne
            if "step" in on and sid == 5 and t0 >= step_from:
                per_tonne *= 1.3
            rate = m.running + per_tonne * produced if produced else m.idle
            if (
                "idle_compressor" in on
                and sid == 2
                and not produced
                and compressor[0] <= t0 < compressor[1]
            ):
                rate = 25.0
            if "night_leak" in on and sid == 3 and t0 >= leak_from:
                rate += 2.0
            frozen = "stuck_meter" in on and sid == 4 and stuck[0] <= t0 < stuck[1]
            if not frozen:
                level += max(0.0, rate / 4 * (1 + rnd.gauss(0, 0.05)))
            ts = t0 + STEP  # the reading at the end of the quarter hour
            if "silent_gateway" in on and device == "gw-b" and silence[0] < ts <= silence[1]:
                continue
            if ts <= end:  # the last reading closes the last quarter hour
                points.append((ts, round(level, 3), 0))
        plant.rows[sid] = [(START_MS, 1000.0, 0), *points]
    return plant


def main() -> None:
    """`python -m tests.cloud.apps.plant [days] [seeds]`: the note's figures (docs/figures.md):
    planted faults found, false findings on the clean plant, and the median time of `analyse`."""
    import statistics
    import sys
    import time

    from cloud.apps.efficiency import analyse
    from cloud.apps.intensity import PlantConfig, ProcessConfig

    days = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    config = PlantConfig((ProcessConfig("line1"), ProcessConfig("line2")))
    planted = found = false_clean = extra = 0
    times = []
    for seed in range(1, seeds + 1):
        for faults in (FAULTS, ()):
            plant = generate(days, faults, seed)
            t0 = time.perf_counter()
            report = analyse(
                plant.series,
                plant.rows,
                plant.events,
                config,
                from_ms=plant.from_ms,
                to_ms=plant.to_ms,
                until_ms=plant.to_ms,
            )
            times.append(time.perf_counter() - t0)
            hits = {(f.kind, f.subject) for f in report.findings}
            if not faults:
                false_clean += len(report.findings)
                continue
            planted += len(plant.faults)
            found += sum(1 for f in plant.faults if (f.kind, f.subject) in hits)
            extra += len(hits - {(f.kind, f.subject) for f in plant.faults})
    readings = sum(len(r) for r in generate(days, (), 1).rows.values())
    print(f"{days} days, {seeds} seeds, {readings} readings per plant")
    print(f"planted faults found: {found} of {planted}")
    print(f"findings on the clean plant: {false_clean} ({seeds * days} plant-days)")
    print(f"findings on the faulty plant beside the planted ones: {extra}")
    print(f"analyse: median {statistics.median(times):.3f} s of {len(times)} runs")


if __name__ == "__main__":
    main()
