"""Records to the bodies of the admin and query APIs (`wire.admin`, `wire.query`): one shape per
record, reused by every answer that shows it."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from cloud.apps.figures import Figure, MaterialsReport, Trace
from cloud.storage.devices import ChainEvent, DeviceState, KeyRecord
from cloud.storage.reads import BucketPoint, EventRecord, LatestValue, Point, SeriesInfo
from wire import query
from wire.admin import (
    ChainEventRecord,
    DeviceClock,
    DeviceDrops,
    DeviceRecord,
    KeyView,
)
from wire.http import DeviceHealth, HealthReport
from wire.keys import b64url_encode


def key_view(k: KeyRecord) -> KeyView:
    return KeyView(
        keyid=k.keyid,
        status=str(k.status),
        public_key=b64url_encode(k.public_key),
        created_ms=k.created_ms,
        not_after_ms=k.not_after_ms,
        revoked_ms=k.revoked_ms,
    )


def chain_event_view(e: ChainEvent) -> ChainEventRecord:
    return ChainEventRecord(
        kind=e.kind, seq=e.seq, expected_seq=e.expected_seq, reason=e.reason, at_ms=e.at_ms
    )


def health_report(body: bytes) -> HealthReport | None:
    """A stored health report; None if it no longer decodes (stored by another version)."""
    try:
        return msgspec.json.decode(body, type=HealthReport)
    except msgspec.DecodeError:
        return None


def health_view(
    device_id: str, received_ms: int, body: bytes, history: Sequence[bytes] | None = None
) -> DeviceHealth | None:
    """A device's latest report (`received_ms` by the receiver's clock), with its history
    (newest first) when `history` is given; None if the latest does not decode."""
    report = health_report(body)
    if report is None:
        return None
    past: list[HealthReport] | msgspec.UnsetType = msgspec.UNSET
    if history is not None:
        past = [r for b in history if (r := health_report(b)) is not None]
    return DeviceHealth(device_id=device_id, received_ms=received_ms, report=report, history=past)


def device_view(
    d: DeviceState, *, detail: bool = False, health: DeviceHealth | None = None
) -> DeviceRecord:
    return DeviceRecord(
        device_id=d.device_id,
        status=str(d.status),
        head_seq=d.head_seq,
        head_digest=b64url_encode(d.head_digest),
        created_ms=d.created_ms,
        last_seen_ms=d.last_seen_ms,
        last_boot_id=d.last_boot_id,
        batches=d.batches,
        readings=d.readings,
        dropped=DeviceDrops(
            buffer_full=d.dropped_buffer_full,
            damaged=d.dropped_damaged,
            rejected_invalid=d.rejected_invalid,
        ),
        clock=DeviceClock(
            state=d.clock_state, offset_ms=d.clock_offset_ms, created_skew_ms=d.created_skew_ms
        ),
        gaps=d.gaps,
        forks=d.forks,
        keys=[key_view(k) for k in d.keys] if detail else msgspec.UNSET,
        chain_events=[chain_event_view(e) for e in d.chain_events] if detail else msgspec.UNSET,
        health=msgspec.UNSET if health is None else health,
    )


def series_view(s: SeriesInfo) -> query.SeriesView:
    return query.SeriesView(
        id=s.series_id,
        device_id=s.device_id,
        metric=s.metric,
        unit=s.unit,
        site=s.site,
        area=s.area,
        process=s.process,
        medium=s.medium,
    )


def point_view(p: Point) -> query.RawPoint:
    return query.RawPoint(ts_ms=p.ts_ms, value=p.value, quality=p.quality)


def bucket_view(b: BucketPoint) -> query.BucketPoint:
    return query.BucketPoint(ts_ms=b.ts_ms, value=b.value, count=b.count)


def latest_view(v: LatestValue) -> query.LatestView:
    return query.LatestView(
        series=series_view(v.series), ts_ms=v.ts_ms, value=v.value, quality=v.quality
    )


def event_view(e: EventRecord) -> query.EventView:
    return query.EventView(
        device_id=e.device_id,
        seq=e.seq,
        kind=e.kind,
        ts_ms=e.ts_ms,
        quality=e.quality,
        attrs=e.attrs,
    )


def _statuses(f: Figure) -> list[str]:
    return [str(f.status(k)) for k in range(len(f.boundaries) - 1)]


def _coverage(f: Figure) -> list[float]:
    return [round(f.coverage(k), 4) for k in range(len(f.boundaries) - 1)]


def gap_view(f: Figure) -> list[query.GapView]:
    return [
        query.GapView(from_ms=g.from_ms, to_ms=g.to_ms, consumption=g.consumption, reset=g.reset)
        for g in f.gaps
    ]


def group_figure(key: dict[str, str], unit: str, ids: list[int], f: Figure) -> query.GroupFigure:
    """Values per interval (aligned with the `intervals` of the answer) and how much is known."""
    return query.GroupFigure(
        key=key,
        unit=unit,
        series=ids,
        values=f.values,
        status=_statuses(f),
        coverage=_coverage(f),
        total=f.total,
        unattributed=f.unattributed,
        gaps=len(f.gaps),
    )


def series_figure(
    info: SeriesInfo, role: str, trace: Trace, f: Figure, lo: int, hi: int
) -> query.SeriesFigure:
    """One counter's figure with the resets and rollovers of its trace within [lo, hi)."""
    return query.SeriesFigure(
        series=series_view(info),
        role=role,
        values=f.values,
        status=_statuses(f),
        coverage=_coverage(f),
        total=f.total,
        unattributed=f.unattributed,
        gaps=gap_view(f),
        resets=[
            trace.ts[i] for i, m in trace.breaks.items() if m is None and lo <= trace.ts[i] < hi
        ],
        rollovers=[
            query.Rollover(ts_ms=trace.ts[i], modulus=m)
            for i, m in trace.breaks.items()
            if m is not None and lo <= trace.ts[i] < hi
        ],
        excursions=trace.excursions,
        excluded=trace.excluded,
    )


def consumption_view(
    boundaries: Sequence[int],
    *,
    until_ms: int,
    interval: str,
    tz: str,
    group_by: Sequence[str],
    groups: Sequence[tuple[dict[str, str], str, list[int], Figure]],
    series: Sequence[tuple[SeriesInfo, str, Trace, Figure]] | None,
) -> query.Consumption:
    lo, hi = boundaries[0], boundaries[-1]
    return query.Consumption(
        from_ms=lo,
        to_ms=hi,
        until_ms=until_ms,
        interval=interval,
        tz=tz,
        group_by=list(group_by),
        intervals=list(boundaries[:-1]),
        groups=[group_figure(key, unit, ids, f) for key, unit, ids, f in groups],
        series=(
            msgspec.UNSET
            if series is None
            else [series_figure(info, role, t, f, lo, hi) for info, role, t, f in series]
        ),
    )


def materials_view(r: MaterialsReport, *, interval: str, tz: str, kind: str) -> query.Materials:
    return query.Materials(
        from_ms=r.boundaries[0],
        to_ms=r.boundaries[-1],
        interval=interval,
        tz=tz,
        kind=kind,
        intervals=r.boundaries[:-1],
        materials=[
            query.MaterialFigure(
                material=m.material,
                net_kg=m.net_kg,
                tickets=m.tickets,
                total_kg=m.total_kg,
                total_tickets=m.total_tickets,
            )
            for m in r.materials
        ],
        skipped=r.skipped,
        flagged=r.flagged,
    )
