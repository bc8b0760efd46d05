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


@dataclass(frozen=True, slots=True)
class TrendRange:
    """A choice of the trend's range picker: how far back, in buckets of what size."""

    name: str  # in the address: `?range=6h`
    label: str  # for people: "last 6 h"
    span_ms: int
    bucket_ms: int  # a line's mean/min/max; a counter's bars are hours, or days from 2 days up


@dataclass
class Trend:
    series: SeriesInfo | None
    counter: SeriesResult | None = None  # consumption per hour (or day), for a counter
    points: list[tuple[int, float, float, float]] = field(default_factory=list)  # avg/min/max
    span: tuple[int, int] = (0, 1)
    range: TrendRange | None = None
    fitted: bool = False  # the span starts where the data began, after the range's start
    bucket_ms: int = 0  # a line's bucket (finer than the range's when it was fitted)
