"""Records to JSON-ready dicts for the admin and query APIs (one shape per record, reused)."""

from __future__ import annotations

from typing import Any

from cloud.storage.base import (
    BucketPoint,
    ChainEvent,
    DeviceState,
    EventRecord,
    KeyRecord,
    LatestValue,
    Point,
    SeriesInfo,
)
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
