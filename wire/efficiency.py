"""The efficiency figures of the query API: intensity per process, medium, day and shift, and
anomalies with evidence (`GET /v1/figures/efficiency`). docs/figures.md defines every field."""

from __future__ import annotations

import msgspec

EFFICIENCY_PATH = "/v1/figures/efficiency"


class IntensityView(msgspec.Struct, frozen=True, kw_only=True):
    process: str
    medium: str
    unit: str  # of consumption; intensity is in unit/t
    period: str  # "day" or a shift name
    from_ms: int
    to_ms: int
    consumption: float | None  # None when any hour of the period is not complete
    tonnes: float
    intensity: float | None  # None when consumption is unknown or nothing was produced
    history_median: float | None  # of the same period over the previous 14 days
    ratio: float | None  # intensity / history_median


class FindingView(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # baseload | night_flow | stuck | silent | step
    subject: str  # "device/metric", a device id, or "process/medium"
    from_ms: int
    to_ms: int
    expected: float
    seen: float
    unit: str
    basis: str  # how `expected` was found
    series_id: int | None
    device_id: str | None
    process: str
    medium: str


class Efficiency(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/figures/efficiency`: production, intensity and findings over a window."""

    from_ms: int
    to_ms: int
    until_ms: int
    tz: str
    processes: list[str]  # ids
    tonnes: dict[str, float]  # per process over the window
    intensity: list[IntensityView]
    findings: list[FindingView]
    # per process: tonnes by source ("counters", "tickets", "entries"), docs/figures.md
    sources: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}  # process id -> the name people read (the plant file's, else the id)
