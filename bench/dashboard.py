"""Dashboard benchmark: `run(size) -> {"dashboard.…": float}`.

A SQLite receiver holding 500 series of one-minute data (40 % meter counters in kWh, m3 and Nm3,
60 % gauges) for `days` days, plus 200 weighbridge tickets a day. The clock is set to 23:59 of
the last day, so "today" is a full day of readings (1,440 per series). Measured, each the median
of a few runs with the dashboard's view cache off:
- `dashboard.overview_ms`: the refresh request (`/dashboard/fragment`): series, latest values,
  devices, today's consumption of every counter (hour and day), tickets, trend, HTML;
- `dashboard.page_ms`: the whole page (`/`), the same work plus the shell;
- `dashboard.latest_ms`: the newest reading of every series (one index probe each);
- `dashboard.figures_today_ms`: `/v1/figures/consumption` for today by hour, all counters;
- `dashboard.rows_total` and `dashboard.rows_today_counters`: what the store holds and what a
  view reads.
BENCH_SIZE=small is 500 series x 2 days (1.4 M readings); full is 500 x 30 days (21.6 M).

A year of history (issue 18), in a second store: the same 500 series with hourly and daily
roll-ups (`cloud.storage.rollups`) for the year before and raw 10-second readings for the last
stretch (full: a year of roll-ups and a week of raw readings, 30 M; small: 30 days and 6 hours,
1.1 M, so `make bench` stays quick). The clock is at the end of the raw readings. Measured:
- `dashboard.overview_ms_1y`: the refresh request, as above (target <= 150 ms);
- `dashboard.trend_7d_ms_1y`: the refresh with the 7-day trend of a gauge, hourly buckets that
  the roll-ups serve.
The table holds about a year of one series in ~525,600 rows; the queries touch today's hourly
roll-ups of the counters (their consumption: `ReadStore.counter_windows`, raw readings only where
a counter drops) and one index entry per series, so their cost follows the day, not the table.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from cloud.app import create_app
from cloud.apps.dashboard import DashboardConfig
from cloud.bearer import BearerCheck
from cloud.config import Config
from cloud.storage.reads import EventRecord, SeriesFilter, SeriesInfo
from cloud.storage.sqlite import SqliteStore
from cloud.storage.sqlite_bulk import BulkDevice, RollupRow, bulk_load

SERIES = 500
COUNTER_SHARE = 0.4
MIN = 60_000
DAY = 86_400_000
DAY0 = 1_795_651_200_000  # 2026-11-26 00:00 UTC: the first stored day
TOKEN = "bench-read-token-0123456789"
SIZES = {"small": 2, "full": 30}
SIZES_1Y = {"small": (30, 6 * 3600), "full": (365, 7 * 86_400)}  # roll-up days, raw seconds
HOUR = 3_600_000
RAW_STEP = 10_000
REPEATS = 5


def _series() -> list[SeriesInfo]:
    out = []
    units = [("energy_import", "kWh", "electricity"), ("cooling_water", "m3", "water")]
    units.append(("natural_gas", "Nm3", "gas"))
    n_counters = int(SERIES * COUNTER_SHARE)
    for i in range(SERIES):
        area = f"hall-{i % 8}"
        process = f"process-{i % 12}"
        if i < n_counters:
            metric, unit, medium = units[i % 3]
        else:
            metric, unit, medium = (f"temperature_{i}", "degC", "")
        device = f"gw-{i % 25:02d}"
        out.append(SeriesInfo(i + 1, device, f"{metric}_{i}", unit, "plant", area, process, medium))
    return out


def _readings(days: int) -> Iterator[list[tuple[int, int, float, int]]]:
    """An hour of the whole plant per chunk."""
    counters = int(SERIES * COUNTER_SHARE)
    for minute in range(0, days * 1440, 60):
        rows = []
        for m in range(minute, minute + 60):
            ts = DAY0 + m * MIN
            for sid in range(1, SERIES + 1):
                if sid <= counters:
                    value = 10_000.0 + sid + m * (0.5 + (sid % 7) / 10)
                else:
                    value = 20.0 + 5 * math.sin(m / 90 + sid)
                rows.append((sid, ts, value, 0))
        yield rows


def _value(sid: int, ts: int) -> float:
    """Counters rise by a sid-dependent rate per minute; gauges swing around 20."""
    m = (ts - DAY0) / MIN
    if sid <= int(SERIES * COUNTER_SHARE):
        return 10_000.0 + sid + m * (0.5 + (sid % 7) / 10)
    return 20.0 + 5 * math.sin(m / 90 + sid)


def _raw_10s(start: int, end: int) -> Iterator[list[tuple[int, int, float, int]]]:
    for hour in range(start, end, HOUR):
        yield [
            (sid, ts, _value(sid, ts), 0)
            for ts in range(hour, min(hour + HOUR, end), RAW_STEP)
            for sid in range(1, SERIES + 1)
        ]


def _rollups(start: int, end: int) -> Iterator[tuple[str, list[RollupRow]]]:
    """Hourly and daily roll-up rows of 10 s readings over [start, end), per day: the history
    whose raw readings have expired (what retention leaves behind)."""
    for day in range(start, end, DAY):
        hourly: list[RollupRow] = []
        daily: list[RollupRow] = []
        for sid in range(1, SERIES + 1):
            for size, out in ((HOUR, hourly), (DAY, daily)):
                for b in range(day, day + DAY, size):
                    n = size // RAW_STEP
                    first, last = _value(sid, b), _value(sid, b + size - RAW_STEP)
                    lo, hi = min(first, last, 15.0), max(first, last, 25.0)
                    end = b + size - RAW_STEP
                    rising = sid <= int(SERIES * COUNTER_SHARE)  # counters rise, gauges swing
                    out.append((sid, b, n, (first + last) / 2 * n, lo, hi, b, first, end, last,
                                n, b, first, end, last, rising, 0))  # fmt: skip
        yield "reading_hourly", hourly
        yield "reading_daily", daily


def build_1y(path: Path, rollup_days: int, raw_s: int) -> tuple[int, int]:
    """The year store; (raw readings, the clock's now)."""

    async def migrate() -> None:
        store = SqliteStore(str(path), synchronous="NORMAL")
        await store.open()
        await store.migrate()
        await store.close()

    asyncio.run(migrate())
    raw_start = DAY0 + rollup_days * DAY
    now = raw_start + raw_s * 1000
    series = _series()
    devices = [
        BulkDevice(d, DAY0, now - 5_000, clock_state=0, clock_offset_ms=3)
        for d in sorted({s.device_id for s in series})
    ]
    total = bulk_load(
        str(path),
        devices=devices,
        series=series,
        readings=_raw_10s(raw_start, now),
        rollups=_rollups(DAY0, raw_start),
    )
    return total, now - 1


async def _median_ms(client: httpx.AsyncClient, headers: dict[str, str], path: str) -> float:
    """The median of REPEATS GETs of `path`, in ms; anything but a 200 stops the bench."""
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        r = await client.get(path, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
    return statistics.median(samples)


async def measure_1y(path: Path, now: int) -> dict[str, float]:
    store = SqliteStore(str(path))
    await store.open()
    try:
        config = Config("http://bench", read=BearerCheck(TOKEN))
        app = create_app(
            config, store, now_ms=lambda: now, dashboard_config=DashboardConfig(cache_s=0)
        )
        headers = {"authorization": f"Bearer {TOKEN}"}
        transport = httpx.ASGITransport(app=app)
        gauge = int(SERIES * COUNTER_SHARE) + 1
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.get("/dashboard/fragment", headers=headers)
            return {
                "dashboard.overview_ms_1y": await _median_ms(
                    client, headers, "/dashboard/fragment"
                ),
                "dashboard.trend_7d_ms_1y": await _median_ms(
                    client, headers, f"/dashboard/fragment?range=7d&series={gauge}"
                ),
            }
    finally:
        await store.close()


def build(path: Path, days: int) -> int:
    """The schema through the store, then rows with the storage's bulk loader."""

    async def migrate() -> None:
        store = SqliteStore(str(path), synchronous="NORMAL")
        await store.open()
        await store.migrate()
        await store.close()

    asyncio.run(migrate())
    series = _series()
    last_seen = DAY0 + days * DAY - 5_000
    devices = [
        BulkDevice(d, DAY0, last_seen, clock_state=0, clock_offset_ms=3)
        for d in sorted({s.device_id for s in series})
    ]
    tickets = [
        EventRecord(f"gw-{d % 25:02d}", 1, "weighbridge_ticket", DAY0 + d * DAY // 200, 0,
                    {"ticket": d, "material": f"M{d % 5}", "net_kg": 20_000 + d % 9_000})
        for d in range(days * 200)
    ]  # fmt: skip
    return bulk_load(
        str(path), devices=devices, series=series, readings=_readings(days), events=tickets
    )


async def measure(path: Path, days: int) -> dict[str, float]:
    now = DAY0 + (days - 1) * DAY + 1439 * MIN
    store = SqliteStore(str(path))
    await store.open()
    try:
        config = Config("http://bench", read=BearerCheck(TOKEN))
        app = create_app(
            config, store, now_ms=lambda: now, dashboard_config=DashboardConfig(cache_s=0)
        )
        headers = {"authorization": f"Bearer {TOKEN}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.get("/dashboard/fragment", headers=headers)  # warm the page cache
            out = {
                "dashboard.overview_ms": await _median_ms(client, headers, "/dashboard/fragment"),
                "dashboard.page_ms": await _median_ms(client, headers, "/"),
                "dashboard.figures_today_ms": await _median_ms(
                    client, headers, "/v1/figures/consumption"
                ),
            }
        samples = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            await store.latest(SeriesFilter())
            samples.append((time.perf_counter() - started) * 1000)
        out["dashboard.latest_ms"] = statistics.median(samples)
        out["dashboard.rows_today_counters"] = float(int(SERIES * COUNTER_SHARE) * 1440)
        return out
    finally:
        await store.close()


def run(size: str) -> dict[str, float]:
    days = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="tierless-dash-") as tmp:
        path = Path(tmp) / "cloud.db"
        started = time.perf_counter()
        total = build(path, days)
        print(
            f"bench: dashboard store: {total:,} readings in {time.perf_counter() - started:.0f} s,"
            f" {path.stat().st_size / 1e6:.0f} MB",
            file=sys.stderr,
        )
        out = asyncio.run(measure(path, days))
        out["dashboard.rows_total"] = float(total)
    with tempfile.TemporaryDirectory(prefix="tierless-dash-1y-") as tmp:
        path = Path(tmp) / "cloud.db"
        started = time.perf_counter()
        total, now = build_1y(path, *SIZES_1Y[size])
        print(
            f"bench: dashboard year store: {total:,} raw readings + roll-ups in"
            f" {time.perf_counter() - started:.0f} s, {path.stat().st_size / 1e6:.0f} MB",
            file=sys.stderr,
        )
        out.update(asyncio.run(measure_1y(path, now)))
        out["dashboard.rows_total_1y"] = float(total)
        return out


if __name__ == "__main__":
    size = sys.argv[1] if len(sys.argv) > 1 else "small"
    for key, value in run(size).items():
        print(f"{key:34} {value:12,.1f}")
