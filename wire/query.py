"""Bodies of the read API under `/v1/` (docs/api.md "Query" and "Figures"). Pure: no I/O.

The receiver writes these; dashboards and apps read them. Every struct is tolerant of unknown
fields. Field order is wire order. Times are epoch milliseconds; ranges are [from_ms, to_ms).
Arrays of a figure (`values`, `status`, `coverage`, `net_kg`, `tickets`) align with `intervals`.
"""

from __future__ import annotations

import msgspec

from wire.models import AttrValue


class SeriesView(msgspec.Struct, frozen=True, kw_only=True):
    """One series: its id and the tags it is filtered and grouped by."""

    id: int
    device_id: str
    metric: str
    unit: str
    site: str
    area: str
    process: str
    medium: str


class SeriesList(msgspec.Struct, frozen=True, kw_only=True):
    series: list[SeriesView]


class RawPoint(msgspec.Struct, frozen=True, kw_only=True):
    """A stored reading; quality 0 good, 1 uncertain, 2 bad, +4 untrusted clock."""

    ts_ms: int
    value: float
    quality: int


class BucketPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One non-empty bucket; `ts_ms` is the bucket start, epoch-aligned."""

    ts_ms: int
    value: float
    count: int


class RawReadings(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/series/{series_id}/readings` without `bucket_ms`: raw, oldest first."""

    series: SeriesView
    from_ms: int
    to_ms: int
    points: list[RawPoint]


class BucketedReadings(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/series/{series_id}/readings` with `bucket_ms` and `agg`."""

    series: SeriesView
    from_ms: int
    to_ms: int
    bucket_ms: int
    agg: str  # avg | min | max | last | sum | count
    points: list[BucketPoint]


class LatestView(msgspec.Struct, frozen=True, kw_only=True):
    series: SeriesView
    ts_ms: int
    value: float
    quality: int


class LatestList(msgspec.Struct, frozen=True, kw_only=True):
    latest: list[LatestView]


class EventView(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    seq: int
    kind: str
    ts_ms: int
    quality: int
    attrs: dict[str, AttrValue]


class EventList(msgspec.Struct, frozen=True, kw_only=True):
    events: list[EventView]


class BatchView(msgspec.Struct, frozen=True, kw_only=True):
    """One stored batch: where its readings came from. `config_version` is the agent config
    that produced every reading and event in it ("" when the agent did not say);
    `min_ts_ms`..`max_ts_ms` the time range they cover (None for a batch of counters only)."""

    device_id: str
    seq: int
    received_ms: int
    boot_id: str
    config_version: str
    readings: int
    events: int
    min_ts_ms: int | None
    max_ts_ms: int | None


class BatchList(msgspec.Struct, frozen=True, kw_only=True):
    batches: list[BatchView]


class GroupFigure(msgspec.Struct, frozen=True, kw_only=True):
    """Consumption of the series sharing `key` (tag values) and `unit`; `gaps` counts them."""

    key: dict[str, str]
    unit: str
    series: list[int]
    values: list[float | None]
    status: list[str]  # complete | partial | gap | future
    coverage: list[float]  # 0..1
    total: float
    unattributed: float
    gaps: int


class GapView(msgspec.Struct, frozen=True, kw_only=True):
    from_ms: int
    to_ms: int
    consumption: float | None  # None across a reset
    reset: bool


class Rollover(msgspec.Struct, frozen=True, kw_only=True):
    ts_ms: int
    modulus: float


class SeriesFigure(msgspec.Struct, frozen=True, kw_only=True):
    """One counter's figure in its own unit (`detail=series`)."""

    series: SeriesView
    role: str  # consumption | export | other
    values: list[float | None]
    status: list[str]
    coverage: list[float]
    total: float
    unattributed: float
    gaps: list[GapView]
    resets: list[int]
    rollovers: list[Rollover]
    excursions: int
    excluded: int


class Consumption(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/figures/consumption`; `series` only with `detail=series` (else not encoded)."""

    from_ms: int
    to_ms: int
    until_ms: int
    interval: str  # hour | day | month | total
    tz: str
    group_by: list[str]
    intervals: list[int]
    groups: list[GroupFigure]
    series: list[SeriesFigure] | msgspec.UnsetType = msgspec.UNSET


class MaterialFigure(msgspec.Struct, frozen=True, kw_only=True):
    material: str
    net_kg: list[float]
    tickets: list[int]
    total_kg: float
    total_tickets: int


class Materials(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/figures/materials`: raw material received, biggest first."""

    from_ms: int
    to_ms: int
    interval: str
    tz: str
    kind: str
    intervals: list[int]
    materials: list[MaterialFigure]
    skipped: dict[str, int]  # reason -> tickets not counted
    flagged: int
