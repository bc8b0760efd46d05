"""SQL text shared by both backends, written once with a placeholder style passed in.

Only column names chosen here (never request input) are formatted into SQL; every value is a
bound parameter. `ph` is "?" for SQLite and "%s" for psycopg.
"""

from __future__ import annotations

from cloud.storage.batches import BatchMeta
from cloud.storage.reads import Agg, SeriesFilter
from wire.models import Batch

SERIES_COLUMNS = "s.id, s.device_id, s.metric, s.unit, s.site, s.area, s.process, s.medium"

# The status a device is read with (`DeviceStatus`): the stored one, except that an active device
# with keys, every one of them revoked, reads as "revoked" (it is never stored so).
_DEVICE_STATUS = (
    "CASE WHEN device.status = 'active'"
    " AND EXISTS (SELECT 1 FROM device_key k WHERE k.device_id = device.id)"
    " AND NOT EXISTS (SELECT 1 FROM device_key k"
    " WHERE k.device_id = device.id AND k.status <> 'revoked')"
    " THEN 'revoked' ELSE device.status END"
)

DEVICE_COLUMNS = (
    f"id, {_DEVICE_STATUS}, head_seq, head_digest, created_ms, last_seen_ms, last_boot_id, "
    "batches, readings, dropped_buffer_full, dropped_damaged, rejected_invalid, clock_state, "
    "clock_offset_ms, created_skew_ms, gaps, forks"
)

KEY_COLUMNS = (
    "k.keyid, k.device_id, k.public_key, k.status, k.not_after_ms, k.created_ms, k.revoked_ms, "
    "d.status"
)

UPDATE_HEAD = (
    "UPDATE device SET head_seq = {p}, head_digest = {p}, last_seen_ms = {p}, last_boot_id = {p},"
    " batches = batches + 1, readings = readings + {p},"
    " dropped_buffer_full = dropped_buffer_full + {p}, dropped_damaged = dropped_damaged + {p},"
    " rejected_invalid = rejected_invalid + {p}, clock_state = {p}, clock_offset_ms = {p},"
    " created_skew_ms = {p} WHERE id = {p}"
)

INSERT_BATCH = (
    "INSERT INTO batch (device_id, seq, digest, prev, keyid, sig_created, received_ms,"
    " content_encoding, wire_bytes, boot_id, reading_count, event_count, config_version,"
    " min_ts_ms, max_ts_ms)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)


def time_range(batch: Batch) -> tuple[int | None, int | None]:
    """The oldest and newest timestamp of the batch's readings and events (None, None: empty)."""
    lows = [min(s.ts_ms) for s in batch.series if s.ts_ms] + [e.ts_ms for e in batch.events]
    highs = [max(s.ts_ms) for s in batch.series if s.ts_ms] + [e.ts_ms for e in batch.events]
    return (min(lows), max(highs)) if lows else (None, None)


def batch_params(meta: BatchMeta, batch: Batch) -> tuple[object, ...]:
    """The values of INSERT_BATCH, in its column order (both backends bind the same)."""
    return (
        meta.device_id,
        meta.seq,
        meta.digest,
        meta.prev,
        meta.keyid,
        meta.sig_created,
        meta.received_ms,
        meta.content_encoding,
        meta.wire_bytes,
        batch.boot_id,
        batch.reading_count(),
        len(batch.events),
        batch.config_version,
        *time_range(batch),
    )


INSERT_EVENT = (
    "INSERT INTO event (device_id, seq, kind, ts_ms, quality, attrs)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
)

# The batch transaction's first read: the chain head, the device's status and the signing key's
# state (NULLs when the store does not hold that key), in one statement. PostgreSQL appends
# `FOR UPDATE OF d`: the device row is the lock that revocations take too.
SELECT_HEAD_AND_KEY = (
    "SELECT d.head_seq, d.head_digest, d.status, k.status, k.not_after_ms FROM device d"
    " LEFT JOIN device_key k ON k.keyid = {p} AND k.device_id = d.id WHERE d.id = {p}"
)

SELECT_SERIES_ID = (
    "SELECT id FROM series WHERE device_id = {p} AND metric = {p} AND unit = {p} AND site = {p}"
    " AND area = {p} AND process = {p} AND medium = {p}"
)


SELECT_KEY = (
    f"SELECT {KEY_COLUMNS} FROM device_key k JOIN device d ON d.id = k.device_id"  # noqa: S608
    " WHERE k.keyid = {p}"
)
SELECT_DEVICE_KEYS = (
    f"SELECT {KEY_COLUMNS} FROM device_key k JOIN device d ON d.id = k.device_id"  # noqa: S608
    " WHERE k.device_id = {p} ORDER BY k.created_ms, k.keyid"
)
SELECT_DEVICES = f"SELECT {DEVICE_COLUMNS} FROM device ORDER BY id"  # noqa: S608
SELECT_DEVICE = f"SELECT {DEVICE_COLUMNS} FROM device WHERE id = {{p}}"  # noqa: S608
SELECT_SERIES = f"SELECT {SERIES_COLUMNS} FROM series s WHERE s.id = {{p}}"  # noqa: S608
BUMP_GAPS = "UPDATE device SET gaps = gaps + 1 WHERE id = {p}"
BUMP_FORKS = "UPDATE device SET forks = forks + 1 WHERE id = {p}"


def fmt(template: str, ph: str) -> str:
    return template.format(p=ph)


def series_where(flt: SeriesFilter, ph: str) -> tuple[str, list[str]]:
    items = flt.items()
    if not items:
        return "", []
    clause = " WHERE " + " AND ".join(f"s.{column} = {ph}" for column, _ in items)
    return clause, [value for _, value in items]


def list_series(flt: SeriesFilter, ph: str) -> tuple[str, list[str]]:
    where, params = series_where(flt, ph)
    return f"SELECT {SERIES_COLUMNS} FROM series s{where} ORDER BY s.id", params  # noqa: S608


READINGS = (
    "SELECT ts_ms, value, quality FROM reading"
    " WHERE series_id = {p} AND ts_ms >= {p} AND ts_ms < {p} ORDER BY ts_ms LIMIT {p}"
)
READINGS_ALL = (  # the ragged ends of a roll-up read (`cloud.storage.rollups`): under an hour
    "SELECT ts_ms, value, quality FROM reading"
    " WHERE series_id = {p} AND ts_ms >= {p} AND ts_ms < {p}"
)
# A BAD reading is a source's "no value here" marker (value 0): aggregates leave it out, and a
# bucket of nothing else is no bucket, so a gap stays a gap (docs/api.md). sqlite_reads.py's
# own LAST query repeats the condition.
_BUCKETS = (
    "SELECT (ts_ms / {p}) * {p} AS bucket, {value}, count(*) FROM reading"
    " WHERE series_id = {p} AND ts_ms >= {p} AND ts_ms < {p} AND (quality & 3) <> 2"
    " GROUP BY bucket ORDER BY bucket"
)
_EVENTS = (
    "SELECT device_id, seq, kind, ts_ms, quality, attrs FROM event WHERE {where}"
    " ORDER BY ts_ms, id LIMIT {p}"
)
# The time range test first, then seq: the primary key (device_id, seq) serves the scan.
BATCHES = (
    "SELECT device_id, seq, received_ms, boot_id, config_version, reading_count, event_count,"
    " min_ts_ms, max_ts_ms FROM batch WHERE device_id = {p} AND max_ts_ms >= {p}"
    " AND min_ts_ms < {p} ORDER BY seq LIMIT {p}"
)
_LATEST = "SELECT {columns}, r.ts_ms, r.value, r.quality FROM series s{join}{where} ORDER BY s.id"


def buckets(agg: Agg, ph: str, *, last_expr: str) -> str:
    """Aggregate per epoch-aligned bucket. Params: bucket, bucket, series, from, to."""
    value = {
        Agg.AVG: "avg(value)",
        Agg.MIN: "min(value)",
        Agg.MAX: "max(value)",
        Agg.SUM: "sum(value)",
        Agg.COUNT: "count(*)",
        Agg.LAST: last_expr,
    }[agg]
    template = _BUCKETS
    return template.format(p=ph, value=value)


def events(device: str | None, kind: str | None, ph: str) -> tuple[str, list[str]]:
    where = [f"ts_ms >= {ph}", f"ts_ms < {ph}"]
    params: list[str] = []
    if device is not None:
        where.append(f"device_id = {ph}")
        params.append(device)
    if kind is not None:
        where.append(f"kind = {ph}")
        params.append(kind)
    template = _EVENTS
    return template.format(where=" AND ".join(where), p=ph), params


def latest(flt: SeriesFilter, ph: str, *, backend: str) -> tuple[str, list[str]]:
    """The newest reading of every series that matches, one index probe per series."""
    where, params = series_where(flt, ph)
    if backend == "postgres":
        # `reading` is partitioned by month: unbounded, the probe visits every partition's index.
        # Every reading's day has a daily roll-up row (a BAD-only day one with n = 0), so the
        # newest roll-up's day is a lower bound with which the executor skips the older
        # partitions ("never executed" in EXPLAIN ANALYZE). No roll-up yet: no bound.
        join = (
            " CROSS JOIN LATERAL (SELECT coalesce(max(bucket_ms), -9223372036854775808) AS since"
            " FROM reading_daily d WHERE d.series_id = s.id) b"
            " CROSS JOIN LATERAL (SELECT ts_ms, value, quality FROM reading"
            " WHERE series_id = s.id AND ts_ms >= b.since ORDER BY ts_ms DESC LIMIT 1) r"
        )
    else:
        join = (
            " JOIN reading r ON r.rowid = (SELECT rowid FROM reading WHERE series_id = s.id"
            " ORDER BY ts_ms DESC LIMIT 1)"
        )
    template = _LATEST
    return template.format(columns=SERIES_COLUMNS, join=join, where=where), params
