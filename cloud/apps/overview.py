"""What one dashboard page shows: the plant overview and the chosen trend, as plain records.

Computed by `cloud.apps.dashboard`, rendered by `cloud.apps.dashboard_page`; kept apart from both
so that the page renders without importing the routes that compute it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from cloud.apps.figures import MaterialsReport
from cloud.apps.query import GroupResult, SeriesResult
from cloud.storage.devices import DeviceState
from cloud.storage.reads import EventRecord, LatestValue, SeriesInfo


@dataclass
class Overview:
    """What every viewer of one time zone sees; computed at most once per `cache_s`."""

    now_ms: int
    tz: ZoneInfo
    day: tuple[int, int]
    series: list[SeriesInfo]
    latest: list[LatestValue]
    devices: list[DeviceState]
    counters: list[SeriesResult]
    by_medium: list[GroupResult]
    by_process: list[GroupResult]
    materials: MaterialsReport
    tickets: list[EventRecord]
    notice: str = ""


@dataclass
class Trend:
    series: SeriesInfo | None
    counter: SeriesResult | None = None  # hourly consumption, for a counter
    points: list[tuple[int, float, float, float]] = field(default_factory=list)  # avg/min/max
    span: tuple[int, int] = (0, 1)
