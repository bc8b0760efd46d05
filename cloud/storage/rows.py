"""Database rows to records, shared by both backends (columns as in `cloud.storage.queries`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cloud.storage.devices import ChainEvent, DeviceState, DeviceStatus, KeyRecord, KeyStatus
from cloud.storage.reads import EventRecord, SeriesInfo


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def key_record(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        keyid=str(row[0]),
        device_id=str(row[1]),
        public_key=bytes(row[2]),
        status=KeyStatus(row[3]),
        not_after_ms=_opt_int(row[4]),
        created_ms=int(row[5]),
        revoked_ms=_opt_int(row[6]),
        device_status=DeviceStatus(row[7]),
    )


def device_state(
    row: Sequence[Any],
    *,
    keys: tuple[KeyRecord, ...] = (),
    chain_events: tuple[ChainEvent, ...] = (),
) -> DeviceState:
    return DeviceState(
        device_id=str(row[0]),
        status=DeviceStatus(row[1]),
        head_seq=int(row[2]),
        head_digest=bytes(row[3]),
        created_ms=int(row[4]),
        last_seen_ms=_opt_int(row[5]),
        last_boot_id=None if row[6] is None else str(row[6]),
        batches=int(row[7]),
        readings=int(row[8]),
        dropped_buffer_full=int(row[9]),
        dropped_damaged=int(row[10]),
        rejected_invalid=int(row[11]),
        clock_state=_opt_int(row[12]),
        clock_offset_ms=_opt_int(row[13]),
        created_skew_ms=_opt_int(row[14]),
        gaps=int(row[15]),
        forks=int(row[16]),
        keys=keys,
        chain_events=chain_events,
    )


def series_info(row: Sequence[Any]) -> SeriesInfo:
    return SeriesInfo(int(row[0]), *(str(v) for v in row[1:8]))


def event_record(row: Sequence[Any], attrs: Mapping[str, Any]) -> EventRecord:
    return EventRecord(
        device_id=str(row[0]),
        seq=int(row[1]),
        kind=str(row[2]),
        ts_ms=int(row[3]),
        quality=int(row[4]),
        attrs=dict(attrs),
    )
