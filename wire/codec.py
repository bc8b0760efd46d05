"""The batch codec: `Batch` <-> body bytes (MessagePack, columnar), before content-coding.

Layout (every struct is a MessagePack array, fields by position; docs/protocol.md has the table):

    batch  = [version=1, device_id, seq, prev(bin 32), boot_id, clock, counters,
              [series...], [event...], config_version?]
    clock  = [state, offset_ms]
    counters = [dropped_buffer_full, dropped_damaged, rejected_invalid]
    series = [metric, unit, site, area, process, medium,
              t0, [dt...],            # first timestamp, then n-1 deltas (ms)
              scale, [iv...], [fv...],# scale 0..9: value = (running sum of iv) / 10**scale
                                      # scale -1: values are the raw floats fv (iv empty)
              [code, run, code, run...]]  # quality, run-length; [] means all GOOD
    event  = [kind, ts_ms, quality, [[name, value]...]]

Why this shape: meters report slowly changing values at a fixed rate, so timestamp deltas repeat and
scaled value deltas are small integers; MessagePack stores those in one byte each and the
compressor folds the repeats (docs/protocol.md gives the measured choice against JSON, gzip, zstd).
Arrays instead of maps mean there are no keys to duplicate; the decimal scale is chosen per series
only when dividing back gives every value exactly, so the codec never rounds a reading.

`config_version` (the agent config that produced the readings, see docs/protocol.md) was added
within version 1 as an optional tenth element: it is left out when empty, so a batch without it
is byte for byte what an older agent sends, and an older receiver ignores a tenth element
(msgspec array-like structs drop trailing extras), so old and new agents and receivers mix.

Invariants:
- decode(encode(b)) == b for every valid batch, value for value (floats compared with ==);
- `batch_digest(body)` is over these uncompressed bytes, so the chain does not depend on the
  content-coding chosen for one attempt;
- decoding is bounded: list lengths are capped by the schema before any value is built, the input
  size is capped by the caller (see `wire.compression`), and every failure is a `DecodeError`.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from typing import Annotated

import msgspec

from wire import PROTOCOL_VERSION
from wire.errors import EncodeError, InvalidBatchError, TooLargeError, UnsupportedEncodingError
from wire.models import (
    Batch,
    ClockReport,
    ClockState,
    Counters,
    Event,
    SeriesData,
    SeriesKey,
)

MEDIA_TYPE = "application/vnd.tierless.batch.v1+msgpack"
MAX_READINGS = 100_000
MAX_SERIES = 10_000
MAX_EVENTS = 10_000
MAX_SCALE = 9
_EXACT_LIMIT = 2**53  # beyond this a double cannot hold every integer: use raw floats

_Name = Annotated[str, msgspec.Meta(max_length=128)]
_Ints = Annotated[list[int], msgspec.Meta(max_length=MAX_READINGS)]
_Floats = Annotated[list[float], msgspec.Meta(max_length=MAX_READINGS)]
_AttrValue = bool | int | float | Annotated[str, msgspec.Meta(max_length=256)]


class _Clock(msgspec.Struct, array_like=True, frozen=True):
    state: int
    offset_ms: int


class _Counters(msgspec.Struct, array_like=True, frozen=True):
    dropped_buffer_full: int
    dropped_damaged: int
    rejected_invalid: int


class _Series(msgspec.Struct, array_like=True):
    metric: _Name
    unit: _Name
    site: _Name
    area: _Name
    process: _Name
    medium: _Name
    t0: int
    dt: _Ints
    scale: int
    iv: _Ints
    fv: _Floats
    q: Annotated[list[int], msgspec.Meta(max_length=2 * MAX_READINGS)]


class _Event(msgspec.Struct, array_like=True):
    kind: _Name
    ts_ms: int
    quality: int
    attrs: Annotated[list[tuple[_Name, _AttrValue]], msgspec.Meta(max_length=32)]


class _Batch(msgspec.Struct, array_like=True):
    version: int
    device_id: _Name
    seq: int
    prev: Annotated[bytes, msgspec.Meta(max_length=32)]
    boot_id: _Name
    clock: _Clock
    counters: _Counters
    series: Annotated[list[_Series], msgspec.Meta(max_length=MAX_SERIES)]
    events: Annotated[list[_Event], msgspec.Meta(max_length=MAX_EVENTS)]


class _BatchWithConfig(_Batch, array_like=True):
    config_version: _Name = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_BatchWithConfig)


def batch_digest(body: bytes) -> bytes:
    """SHA-256 of the uncompressed body: the batch's identity and the next batch's `prev`."""
    return hashlib.sha256(body).digest()


def encode_batch(batch: Batch) -> bytes:
    """The body bytes of a valid batch; raises EncodeError naming the field that is not."""
    try:
        batch.validate()
    except InvalidBatchError as exc:
        raise EncodeError(str(exc)) from exc
    if batch.reading_count() > MAX_READINGS:
        raise EncodeError(f"{batch.reading_count()} readings exceed the cap of {MAX_READINGS}")
    if len(batch.events) > MAX_EVENTS:
        raise EncodeError(f"{len(batch.events)} events exceed the cap of {MAX_EVENTS}")
    fields = (
        PROTOCOL_VERSION,
        batch.device_id,
        batch.seq,
        batch.prev,
        batch.boot_id,
        _Clock(int(batch.clock.state), batch.clock.offset_ms),
        _Counters(
            batch.counters.dropped_buffer_full,
            batch.counters.dropped_damaged,
            batch.counters.rejected_invalid,
        ),
        [_encode_series(s) for s in batch.series],
        [_Event(e.kind, e.ts_ms, e.quality, [(n, v) for n, v in e.attrs]) for e in batch.events],
    )
    if batch.config_version:
        return _encoder.encode(_BatchWithConfig(*fields, batch.config_version))
    return _encoder.encode(_Batch(*fields))


def decode_batch(body: bytes) -> Batch:
    """Parse and validate untrusted body bytes; every failure is a DecodeError subclass."""
    try:
        wire = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        if "`array` of length" in str(exc):  # a count cap, not a malformed field
            raise TooLargeError(f"batch body: {exc}") from exc
        raise InvalidBatchError(f"batch body: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec lets bad UTF-8 through
        raise InvalidBatchError(f"batch body is not valid MessagePack: {exc}") from exc
    if wire.version != PROTOCOL_VERSION:
        raise UnsupportedEncodingError(f"batch version {wire.version} is not supported")
    total = sum(len(s.dt) + 1 for s in wire.series)
    if total > MAX_READINGS:
        raise TooLargeError(f"{total} readings exceed the cap of {MAX_READINGS}")
    try:
        state = ClockState(wire.clock.state)
    except ValueError as exc:
        raise InvalidBatchError(f"clock.state: unknown value {wire.clock.state}") from exc
    batch = Batch(
        device_id=wire.device_id,
        seq=wire.seq,
        prev=wire.prev,
        boot_id=wire.boot_id,
        series=[_decode_series(s, f"series[{i}]") for i, s in enumerate(wire.series)],
        events=[
            Event(e.kind, e.ts_ms, tuple((n, v) for n, v in e.attrs), e.quality)
            for e in wire.events
        ],
        counters=Counters(
            wire.counters.dropped_buffer_full,
            wire.counters.dropped_damaged,
            wire.counters.rejected_invalid,
        ),
        clock=ClockReport(state, wire.clock.offset_ms),
        config_version=wire.config_version,
    )
    batch.validate()
    return batch


def _encode_series(s: SeriesData) -> _Series:
    k = s.key
    ts = s.ts_ms
    dt = list(map(operator.sub, itertools.islice(ts, 1, None), ts))
    scale, ints = _scaled(s.values)
    if scale >= 0:
        iv = [ints[0], *map(operator.sub, itertools.islice(ints, 1, None), ints)]
        fv: list[float] = []
    else:
        iv, fv = [], list(s.values)
    q = [] if not any(s.quality) else _runs(s.quality)
    return _Series(
        k.metric, k.unit, k.site, k.area, k.process, k.medium, ts[0], dt, scale, iv, fv, q
    )


def _scaled(values: list[float]) -> tuple[int, list[int]]:
    """The smallest decimal scale at which every value survives int/10**scale exactly, or -1."""
    sample = values[:8]
    start = next((d for d in range(MAX_SCALE + 1) if _exact(sample, d) is not None), None)
    if start is None:
        return -1, []
    for digits in range(start, MAX_SCALE + 1):
        ints = _exact(values, digits)
        if ints is not None:
            return digits, ints
    return -1, []


def _exact(values: list[float], digits: int) -> list[int] | None:
    factor = 10**digits
    try:
        ints = [round(v * factor) for v in values]
    except (OverflowError, ValueError):  # inf or nan: validate() reports them with their index
        return None
    if max(ints) >= _EXACT_LIMIT or min(ints) <= -_EXACT_LIMIT:
        return None
    # int / int is correctly rounded in Python (and in IEEE double for |i| < 2^53), so this is
    # exactly what a decoder in any language computes.
    if list(map(operator.truediv, ints, itertools.repeat(factor))) != values:
        return None
    return ints


def _runs(codes: list[int]) -> list[int]:
    out: list[int] = []
    for code, group in itertools.groupby(codes):
        out.append(code)
        out.append(sum(1 for _ in group))
    return out


def _decode_series(w: _Series, where: str) -> SeriesData:
    n = len(w.dt) + 1
    if w.scale == -1:
        if w.iv or len(w.fv) != n:
            raise InvalidBatchError(f"{where}: scale -1 needs {n} raw values and no iv")
        values = w.fv
    elif 0 <= w.scale <= MAX_SCALE:
        if w.fv or len(w.iv) != n:
            raise InvalidBatchError(f"{where}: scale {w.scale} needs {n} iv values and no fv")
        ints = list(itertools.accumulate(w.iv))
        if max(ints) >= _EXACT_LIMIT or min(ints) <= -_EXACT_LIMIT:
            raise InvalidBatchError(f"{where}.iv: scaled value beyond 2^53")
        factor = 10**w.scale
        values = list(map(operator.truediv, ints, itertools.repeat(factor)))
    else:
        raise InvalidBatchError(f"{where}.scale: {w.scale} is not in -1..{MAX_SCALE}")
    return SeriesData(
        SeriesKey(w.metric, w.unit, w.site, w.area, w.process, w.medium),
        list(itertools.accumulate(w.dt, initial=w.t0)),
        values,
        _expand_runs(w.q, n, where),
    )


def _expand_runs(q: list[int], n: int, where: str) -> list[int]:
    if not q:
        return [0] * n
    if len(q) % 2:
        raise InvalidBatchError(f"{where}.q: odd length, expected code/run pairs")
    runs = q[1::2]
    if min(runs) < 1 or sum(runs) != n:
        raise InvalidBatchError(f"{where}.q: runs must be positive and add up to {n}")
    out: list[int] = []
    for code, run in zip(q[0::2], runs, strict=True):
        out.extend(itertools.repeat(code, run))
    return out
