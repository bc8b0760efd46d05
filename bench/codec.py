"""Codec figures: bytes and time per reading of the reference batch, against row JSON + gzip.

Also measures the alternatives the choice was made against (the same columnar layout as JSON, and
each layout under gzip and zstd), so docs/protocol.md's table can be re-checked on any machine.
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Callable

import msgspec

from bench.reference import reference_batch
from wire import codec
from wire.codec import decode_batch, encode_batch
from wire.compression import compress, decompress
from wire.models import Batch


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def row_json(batch: Batch) -> bytes:
    """The naive baseline: one JSON object per reading, as many gateways send them."""
    rows = [
        {
            "device": batch.device_id,
            "metric": r.series.metric,
            "unit": r.series.unit,
            **r.series.tags(),
            "ts": r.ts_ms,
            "value": r.value,
            "quality": r.quality,
        }
        for r in batch.readings()
    ]
    return json.dumps(rows).encode()


def columnar_json(batch: Batch) -> bytes:
    """Our columnar layout, but serialised as JSON instead of MessagePack."""
    body = encode_batch(batch)
    wire = msgspec.msgpack.decode(body, type=codec._Batch)
    return msgspec.json.encode(wire)


def run(size: str) -> dict[str, float]:
    repeat = 30 if size == "full" else 9
    batch = reference_batch()
    n = batch.reading_count()
    body = encode_batch(batch)
    out: dict[str, float] = {}

    for enc in ("zstd", "gzip"):
        wire_bytes = compress(body, enc)

        def encode(enc: str = enc) -> bytes:
            return compress(encode_batch(batch), enc)

        def decode(wire_bytes: bytes = wire_bytes, enc: str = enc) -> Batch:
            return decode_batch(decompress(wire_bytes, enc, 8 << 20))

        out[f"codec.bytes_per_reading.{enc}"] = len(wire_bytes) / n
        out[f"codec.encode_us_per_reading.{enc}"] = median_seconds(encode, repeat) / n * 1e6
        out[f"codec.decode_us_per_reading.{enc}"] = median_seconds(decode, repeat) / n * 1e6
    cj = columnar_json(batch)
    out["codec.columnar_json_bytes_per_reading.gzip"] = len(compress(cj, "gzip")) / n
    out["codec.columnar_json_bytes_per_reading.zstd"] = len(compress(cj, "zstd")) / n
    out["codec.msgpack_raw_bytes_per_reading"] = len(body) / n

    rows = row_json(batch)
    out["codec.baseline_bytes_per_reading"] = len(gzip.compress(rows, 6)) / n
    out["codec.baseline_encode_us_per_reading"] = (
        median_seconds(lambda: gzip.compress(row_json(batch), 6), repeat) / n * 1e6
    )
    out["codec.baseline_decode_us_per_reading"] = (
        median_seconds(lambda: json.loads(gzip.decompress(gzip.compress(rows, 6))), repeat)
        / n
        * 1e6
    )
    # The headline keys (docs/benchmarks.md): what the agent sends when the receiver has zstd.
    out["codec.bytes_per_reading"] = out["codec.bytes_per_reading.zstd"]
    out["codec.encode_us_per_reading"] = out["codec.encode_us_per_reading.zstd"]
    out["codec.decode_us_per_reading"] = out["codec.decode_us_per_reading.zstd"]
    return out
