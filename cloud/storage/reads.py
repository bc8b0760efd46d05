"""The read interface: everything the platform's apps may ask of storage, and its records.

`ReadStore` has no method that writes; the apps (`cloud.apps`) are given a store typed as
`ReadStore` and import nothing else of storage but this module and `cloud.storage.devices`
(tests/test_layering.py checks it). Every method translates driver errors into
`cloud.errors.StoreError` subclasses; time ranges are [from_ms, to_ms) in UTC epoch milliseconds.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cloud.storage.devices import DeviceState
from cloud.storage.health import HealthReads

# ProductionRecord is re-exported: the apps read entries through this interface only.
from cloud.storage.production import ProductionReads
from cloud.storage.production import ProductionRecord as ProductionRecord

Row = tuple[int, float, int]  # (ts_ms, value, quality): `cloud.apps.figures.Row`


class Agg(enum.StrEnum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    SUM = "sum"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class SeriesFilter:
    device: str | None = None
    metric: str | None = None
    site: str | None = None
    area: str | None = None
    process: str | None = None
    medium: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """(column, value) for each filter that is set; column names are fixed, never input."""
        pairs = (
            ("device_id", self.device),
            ("metric", self.metric),
            ("site", self.site),
            ("area", self.area),
            ("process", self.process),
            ("medium", self.medium),
        )
        return [(c, v) for c, v in pairs if v is not None]


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    series_id: int
    device_id: str
    metric: str
    unit: str
    site: str
    area: str
    process: str
    medium: str


@dataclass(frozen=True, slots=True)
class Point:
    ts_ms: int
    value: float
    quality: int


@dataclass(frozen=True, slots=True)
class BucketPoint:
    ts_ms: int  # bucket start
    value: float
    count: int


@dataclass(frozen=True, slots=True)
class LatestValue:
    series: SeriesInfo
    ts_ms: int
    value: float
    quality: int


@dataclass(frozen=True, slots=True)
class EventRecord:
    device_id: str
    seq: int
    kind: str
    ts_ms: int
    quality: int
    attrs: dict[str, str | int | float | bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A stored batch's provenance: the config that produced it and the time it covers."""

    device_id: str
    seq: int
    received_ms: int
    boot_id: str
    config_version: str
    readings: int
    events: int
    min_ts_ms: int | None
    max_ts_ms: int | None


@dataclass(frozen=True, slots=True)
class CounterWindow:
    """A series' rows for the counter rules (`ReadStore.counter_windows`), and how many
    unusable readings were left out of them (`cloud.apps.figures.Trace.excluded` adds them)."""

    series_id: int
    rows: list[Row]
    excluded: int = 0


class ReadStore(HealthReads, ProductionReads, Protocol):
    """Series, readings, buckets, latest values, events, devices, the gateways' health reports
    (`cloud.storage.health`), operators' production entries (`cloud.storage.production`) and the
    figures' windows."""

    kind: str

    async def list_devices(self) -> list[DeviceState]: ...

    async def list_series(self, flt: SeriesFilter) -> list[SeriesInfo]: ...

    async def get_series(self, series_id: int) -> SeriesInfo | None: ...

    async def readings(self, series_id: int, from_ms: int, to_ms: int, limit: int) -> list[Point]:
        """Raw readings with from_ms <= ts < to_ms, oldest first, at most `limit`."""

    async def buckets(
        self, series_id: int, from_ms: int, to_ms: int, bucket_ms: int, agg: Agg
    ) -> list[BucketPoint]:
        """One aggregate per non-empty bucket of `bucket_ms`, aligned to the epoch."""

    async def latest(self, flt: SeriesFilter) -> list[LatestValue]: ...

    async def events(
        self, device_id: str | None, kind: str | None, from_ms: int, to_ms: int, limit: int
    ) -> list[EventRecord]: ...

    async def batches(
        self, device_id: str, from_ms: int, to_ms: int, limit: int
    ) -> list[BatchRecord]:
        """The device's batches whose readings or events fall in [from_ms, to_ms) (by their
        time range), oldest seq first, at most `limit`."""

    def series_windows(
        self,
        series_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        *,
        context_ms: int,
        budget_rows: int,
        probe_after: bool = True,
    ) -> AsyncIterator[list[tuple[int, list[Row]]]]:
        """The rows the figures compute from, a chunk of series at a time: per series the
        readings of [from_ms - context_ms, to_ms + context_ms) plus the nearest usable reading
        outside that range on each side (`cloud.storage.windows.WindowReads` has the whole
        contract). `RowBudgetError` once more than `budget_rows` readings would be read."""
        ...

    def counter_windows(
        self,
        series_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        *,
        context_ms: int,
        excursion_ms: int,
        budget_rows: int,
        probe_after: bool = True,
    ) -> AsyncIterator[list[CounterWindow]]:
        """`series_windows` with the hours where the counter rules have nothing to do read from
        the hourly roll-ups (`cloud.storage.windows.CounterWindowReads` has the contract): the
        same figures on grids of whole UTC hours, from a few rows per series-hour."""
        ...
