"""What the PostgreSQL store sends for a batch, as text: no I/O, no connections.

- `INGEST_CALL` + `call_params`: the small-batch transaction as one statement, the PL/pgSQL
  function `ingest_batch` (migration 0002, with the key check of 0003 and the provenance of
  0007). Arrays travel as PostgreSQL array literals in text parameters, built here: psycopg
  adapts a Python list element by element in Python, which cost ~55 us a batch more than these
  joins (measured with 10 readings).
- `copy_text`: readings in `COPY ... FROM STDIN` text format, for large batches and the bench's
  storage limit.

Numbers are written with `str`: it round-trips every float exactly (repr), PostgreSQL parses
that text exactly (1e+16, -0.0, inf included), and an IntEnum writes its bare number. Strings in
array literals are always double-quoted with `"` and `\\` escaped, so any text (commas, braces,
"NULL", spaces) comes back as sent; None is the unquoted NULL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from cloud.storage import queries
from cloud.storage.batches import BatchMeta
from wire.models import Batch

INGEST_CALL = (
    "SELECT outcome, expected_seq, reason, series_ids FROM ingest_batch("
    "%s, %s::int8, %s::bytea, %s::bytea, %s, %s::int8, %s::int8, %s, %s::int4, %s,"
    " %s::int8, %s::int8, %s::int8, %s::int2, %s::int8, %s::int8,"
    " %s::int8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::int4[], %s::int8[], %s::float8[], %s::int2[],"
    " %s::text[], %s::int8[], %s::int2[], %s::jsonb[],"
    " %s, %s::int8, %s::int8)"
)


def call_params(meta: BatchMeta, batch: Batch, known_ids: Sequence[int | None]) -> tuple[Any, ...]:
    """The parameters of `INGEST_CALL`, in the function's order. `known_ids` has one element
    per series of the batch: its id if the caller has it cached, else None."""
    keys = [s.key for s in batch.series]
    reading_series: list[int] = []
    ts_ms: list[int] = []
    values: list[float] = []
    quality: list[int] = []
    for i, s in enumerate(batch.series, start=1):
        reading_series += [i] * len(s.ts_ms)
        ts_ms += s.ts_ms
        values += s.values
        quality += s.quality
    events = batch.events
    c = batch.counters
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
        c.dropped_buffer_full,
        c.dropped_damaged,
        c.rejected_invalid,
        int(batch.clock.state),
        batch.clock.offset_ms,
        meta.sig_created * 1000 - meta.received_ms,
        number_array(known_ids),
        text_array([k.metric for k in keys]),
        text_array([k.unit for k in keys]),
        text_array([k.site for k in keys]),
        text_array([k.area for k in keys]),
        text_array([k.process for k in keys]),
        text_array([k.medium for k in keys]),
        number_array(reading_series),
        number_array(ts_ms),
        number_array(values),
        number_array(quality),
        text_array([e.kind for e in events]),
        number_array([e.ts_ms for e in events]),
        number_array([e.quality for e in events]),
        text_array([json.dumps(dict(e.attrs)) for e in events]),  # as psycopg's Jsonb does
        batch.config_version,
        *queries.time_range(batch),
    )


def number_array(values: Sequence[int | float | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def text_array(values: Sequence[str]) -> str:
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return "{" + ",".join([f'"{v}"' for v in quoted]) + "}"


def copy_text(rows: Iterable[tuple[int, int, float, int]]) -> str:
    """Reading rows (series_id, ts_ms, value, quality) as COPY text, one line each."""
    return "".join([f"{s}\t{t}\t{v!r}\t{q}\n" for s, t, v, q in rows])
