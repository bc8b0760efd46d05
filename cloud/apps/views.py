"""Records to JSON-ready dicts for the admin and query APIs (one shape per record, reused)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cloud.apps.figures import Figure, MaterialsReport, Trace
from cloud.storage.devices import ChainEvent, DeviceState, KeyRecord
from cloud.storage.reads import BucketPoint, EventRecord, LatestValue, Point, SeriesInfo
from wire.keys import b64url_encode


def key_view(k: KeyRecord) -> dict[str, Any]:
    return {
        "keyid": k.keyid,
        "status": str(k.status),
        "public_key": b64url_encode(k.public_key),
        "created_ms": k.created_ms,
        "not_after_ms": k.not_after_ms,
        "revoked_ms": k.revoked_ms,
    }


def chain_event_view(e: ChainEvent) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "seq": e.seq,
        "expected_seq": e.expected_seq,
        "reason": e.reason,
        "at_ms": e.at_ms,
    }


def device_view(d: DeviceState, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "device_id": d.device_id,
        "status": str(d.status),
        "head_seq": d.head_seq,
        "head_digest": b64url_encode(d.head_digest),
        "created_ms": d.created_ms,
        "last_seen_ms": d.last_seen_ms,
        "last_boot_id": d.last_boot_id,
        "batches": d.batches,
        "readings": d.readings,
        "dropped": {
            "buffer_full": d.dropped_buffer_full,
            "damaged": d.dropped_damaged,
            "rejected_invalid": d.rejected_invalid,
        },
        "clock": {
            "state": d.clock_state,
            "offset_ms": d.clock_offset_ms,
            "created_skew_ms": d.created_skew_ms,
        },
        "gaps": d.gaps,
        "forks": d.forks,
    }
    if detail:
        out["keys"] = [key_view(k) for k in d.keys]
        out["chain_events"] = [chain_event_view(e) for e in d.chain_events]
    return out


def series_view(s: SeriesInfo) -> dict[str, Any]:
    return {
        "id": s.series_id,
        "device_id": s.device_id,
        "metric": s.metric,
        "unit": s.unit,
        "site": s.site,
        "area": s.area,
        "process": s.process,
        "medium": s.medium,
    }


def point_view(p: Point) -> dict[str, Any]:
    return {"ts_ms": p.ts_ms, "value": p.value, "quality": p.quality}


def bucket_view(b: BucketPoint) -> dict[str, Any]:
    return {"ts_ms": b.ts_ms, "value": b.value, "count": b.count}


def latest_view(v: LatestValue) -> dict[str, Any]:
    return {
        "series": series_view(v.series),
        "ts_ms": v.ts_ms,
        "value": v.value,
        "quality": v.quality,
    }


def event_view(e: EventRecord) -> dict[str, Any]:
    return {
        "device_id": e.device_id,
        "seq": e.seq,
        "kind": e.kind,
        "ts_ms": e.ts_ms,
        "quality": e.quality,
        "attrs": e.attrs,
    }


def figure_view(f: Figure) -> dict[str, Any]:
    """Values per interval (aligned with the `intervals` of the answer) and how much is known."""
    last = len(f.boundaries) - 1
    return {
        "values": f.values,
        "status": [str(f.status(k)) for k in range(last)],
        "coverage": [round(f.coverage(k), 4) for k in range(last)],
        "total": f.total,
        "unattributed": f.unattributed,
    }


def gap_view(f: Figure) -> list[dict[str, Any]]:
    return [
        {"from_ms": g.from_ms, "to_ms": g.to_ms, "consumption": g.consumption, "reset": g.reset}
        for g in f.gaps
    ]


def consumption_view(
    boundaries: Sequence[int],
    *,
    until_ms: int,
    interval: str,
    tz: str,
    group_by: Sequence[str],
    groups: Sequence[tuple[dict[str, str], str, list[int], Figure]],
    series: Sequence[tuple[SeriesInfo, str, Trace, Figure]] | None,
) -> dict[str, Any]:
    lo, hi = boundaries[0], boundaries[-1]
    out: dict[str, Any] = {
        "from_ms": lo,
        "to_ms": hi,
        "until_ms": until_ms,
        "interval": interval,
        "tz": tz,
        "group_by": list(group_by),
        "intervals": list(boundaries[:-1]),
        "groups": [
            {"key": key, "unit": unit, "series": ids, **figure_view(f), "gaps": len(f.gaps)}
            for key, unit, ids, f in groups
        ],
    }
    if series is not None:
        out["series"] = [
            {
                "series": series_view(info),
                "role": role,
                **figure_view(f),
                "gaps": gap_view(f),
                "resets": [
                    trace.ts[i]
                    for i, m in trace.breaks.items()
                    if m is None and lo <= trace.ts[i] < hi
                ],
                "rollovers": [
                    {"ts_ms": trace.ts[i], "modulus": m}
                    for i, m in trace.breaks.items()
                    if m is not None and lo <= trace.ts[i] < hi
                ],
                "excursions": trace.excursions,
                "excluded": trace.excluded,
            }
            for info, role, trace, f in series
        ]
    return out


def materials_view(r: MaterialsReport, *, interval: str, tz: str, kind: str) -> dict[str, Any]:
    return {
        "from_ms": r.boundaries[0],
        "to_ms": r.boundaries[-1],
        "interval": interval,
        "tz": tz,
        "kind": kind,
        "intervals": r.boundaries[:-1],
        "materials": [
            {
                "material": m.material,
                "net_kg": m.net_kg,
                "tickets": m.tickets,
                "total_kg": m.total_kg,
                "total_tickets": m.total_tickets,
            }
            for m in r.materials
        ],
        "skipped": r.skipped,
        "flagged": r.flagged,
    }
