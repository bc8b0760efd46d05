"""The batch codec: exact round trips, compact bytes, and strict refusal of bad bodies."""

from __future__ import annotations

import contextlib
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.reference import reference_batch
from tests.wire.strategies import batches
from wire.codec import MAX_READINGS, batch_digest, decode_batch, encode_batch
from wire.compression import compress
from wire.errors import (
    DecodeError,
    EncodeError,
    InvalidBatchError,
    TooLargeError,
    UnsupportedEncodingError,
)
from wire.models import GENESIS, Batch, Event, SeriesData, SeriesKey


def same_batch(a: Batch, b: Batch) -> None:
    assert (a.device_id, a.seq, a.prev, a.boot_id) == (b.device_id, b.seq, b.prev, b.boot_id)
    assert (a.counters, a.clock, a.events) == (b.counters, b.clock, b.events)
    assert a.config_version == b.config_version
    assert [s.key for s in a.series] == [s.key for s in b.series]
    for x, y in zip(a.series, b.series, strict=True):
        assert x.ts_ms == y.ts_ms
        assert x.quality == y.quality
        # == on floats: the codec must give back the very same doubles (-0.0 == 0.0 is allowed)
        assert x.values == y.values


def small_batch(**changes: object) -> Batch:
    s = SeriesData(SeriesKey("energy", "kWh", "site", "", "leach", "electricity"))
    s.append(1_790_000_000_000, 12345.6)
    s.append(1_790_000_001_000, 12345.7, 1)
    b = Batch("gw-1", 1, GENESIS, "boot", [s])
    for name, value in changes.items():
        setattr(b, name, value)
    return b


@settings(max_examples=200, deadline=None)
@given(batches())
def test_random_batches_round_trip(batch: Batch) -> None:
    body = encode_batch(batch)
    same_batch(decode_batch(body), batch)
    assert encode_batch(decode_batch(body)) == body  # the digest is stable across a round trip


class _Version1Batch(msgspec.Struct, array_like=True):
    """The batch as a receiver from before `config_version` decodes it (its nine fields)."""

    version: int
    device_id: str
    seq: int
    prev: bytes
    boot_id: str
    clock: tuple[int, int]
    counters: tuple[int, int, int]
    series: list[object]
    events: list[object]


def test_config_version_is_an_optional_tenth_element_both_ways() -> None:
    plain, named = small_batch(), small_batch(config_version="3f2a9c0d41b7e655")
    plain_body, named_body = encode_batch(plain), encode_batch(named)
    # without a version: the nine-element array an older agent sends, byte for byte
    assert msgspec.msgpack.decode(plain_body)[:9] == msgspec.msgpack.decode(named_body)[:9]
    assert len(msgspec.msgpack.decode(plain_body)) == 9
    assert msgspec.msgpack.decode(named_body)[9] == "3f2a9c0d41b7e655"
    # an older receiver's decoder takes the new body; this decoder takes the old body
    old = msgspec.msgpack.decode(named_body, type=_Version1Batch)
    assert (old.device_id, old.seq) == ("gw-1", 1)
    assert decode_batch(plain_body).config_version == ""
    assert decode_batch(named_body).config_version == "3f2a9c0d41b7e655"


@pytest.mark.parametrize("bad", ["x" * 129, "a\nb"])
def test_config_version_is_a_name_on_both_sides(bad: str) -> None:
    with pytest.raises(EncodeError, match="config_version"):
        encode_batch(small_batch(config_version=bad))
    fields = msgspec.msgpack.decode(encode_batch(small_batch()))
    with pytest.raises(DecodeError, match=r"config_version|\$\[9\]"):
        decode_batch(msgspec.msgpack.encode([*fields, bad]))


def test_reference_batch_is_compact_and_exact() -> None:
    batch = reference_batch()
    body = encode_batch(batch)
    same_batch(decode_batch(body), batch)
    n = batch.reading_count()
    assert n == 10_000
    # the target is <= 2 bytes per reading on the wire; gzip is the fallback that must
    # always work, so it has to meet the target on its own
    assert len(compress(body, "gzip")) / n <= 2.0
    assert len(compress(body, "zstd")) / n <= 2.0


def test_decimal_values_use_scaled_integers() -> None:
    body = encode_batch(small_batch())
    raw = msgspec.msgpack.decode(body)
    series = raw[7][0]
    assert series[8] == 1  # one decimal digit
    assert series[9] == [123456, 1]  # absolute first, then the delta
    assert series[10] == []
    assert series[11] == [0, 1, 1, 1]  # one good, one uncertain


def test_values_that_no_scale_represents_go_raw() -> None:
    s = SeriesData(SeriesKey("x"))
    s.append(1_790_000_000_000, 1 / 3)
    s.append(1_790_000_001_000, math.pi)
    b = Batch("gw", 1, GENESIS, "boot", [s])
    raw = msgspec.msgpack.decode(encode_batch(b))
    assert raw[7][0][8] == -1
    assert raw[7][0][10] == [1 / 3, math.pi]


def test_digest_is_sha256_of_the_body() -> None:
    body = encode_batch(small_batch())
    assert len(batch_digest(body)) == 32
    assert batch_digest(body) != batch_digest(encode_batch(small_batch(seq=2)))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seq": 0}, "seq"),
        ({"prev": b"short"}, "prev"),
        ({"device_id": ""}, "device_id"),
        ({"device_id": "a\nb"}, "device_id"),
        ({"events": [Event("ticket", 1_790_000_000_000, (("a", 1), ("a", 2)))]}, "duplicate"),
        ({"events": [Event("ticket", 1_790_000_000_000, (("m", math.nan),))]}, "finite"),
    ],
)
def test_encoder_refuses_invalid_batches(change: dict[str, object], field: str) -> None:
    with pytest.raises(EncodeError, match=field):
        encode_batch(small_batch(**change))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_with_their_index(bad: float) -> None:
    b = small_batch()
    b.series[0].values[1] = bad
    with pytest.raises(EncodeError, match=r"series\[0\]\.values\[1\]"):
        encode_batch(b)


def test_timestamps_from_an_unset_clock_are_refused() -> None:
    b = small_batch()
    b.series[0].ts_ms[0] = 0  # 1970: a gateway that never had its clock set
    with pytest.raises(EncodeError, match="outside 2000..2100"):
        encode_batch(b)


def test_too_many_readings_are_refused_on_both_sides() -> None:
    s = SeriesData(SeriesKey("x"))
    for i in range(MAX_READINGS + 1):
        s.append(1_790_000_000_000 + i, 1.0)
    with pytest.raises(EncodeError, match="cap"):
        encode_batch(Batch("gw", 1, GENESIS, "boot", [s]))
    raw = msgspec.msgpack.decode(encode_batch(small_batch()))
    raw[7][0][7] = [1] * MAX_READINGS
    raw[7][0][9] = [1] * (MAX_READINGS + 1)
    with pytest.raises(TooLargeError):
        decode_batch(msgspec.msgpack.encode(raw))


def mutate(path: tuple[int, ...], value: object) -> bytes:
    raw = msgspec.msgpack.decode(encode_batch(small_batch()))
    target = raw
    for i in path[:-1]:
        target = target[i]
    target[path[-1]] = value
    return msgspec.msgpack.encode(raw)


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ((0,), 2, UnsupportedEncodingError),
        ((2,), "one", InvalidBatchError),
        ((2,), 2**64 - 1, InvalidBatchError),
        ((3,), b"\x00" * 31, InvalidBatchError),
        ((5, 0), 9, InvalidBatchError),
        ((7, 0, 8), 10, InvalidBatchError),
        ((7, 0, 8), -1, InvalidBatchError),  # raw floats announced, integers sent
        ((7, 0, 7), [1000, 1000], InvalidBatchError),  # dt longer than the values
        ((7, 0, 9), [2**53, 0], InvalidBatchError),
        ((7, 0, 10), [1.5], InvalidBatchError),
        ((7, 0, 11), [0, 1], InvalidBatchError),  # runs do not cover the series
        ((7, 0, 11), [0, 1, 3, 1], InvalidBatchError),  # unknown quality code
        ((7, 0, 11), [0], InvalidBatchError),
        ((7, 0, 6), -5, InvalidBatchError),
        ((7, 0, 0), "x" * 200, InvalidBatchError),
        ((8,), [["k", 1_790_000_000_000, 0, [["a", None]]]], InvalidBatchError),
    ],
)
def test_decoder_refuses_each_malformed_field(
    path: tuple[int, ...], value: object, error: type[DecodeError]
) -> None:
    with pytest.raises(error):
        decode_batch(mutate(path, value))


def test_decoder_refuses_nan_in_raw_floats() -> None:
    body = mutate((7, 0), ["x", "", "", "", "", "", 1_790_000_000_000, [], -1, [], [math.nan], []])
    with pytest.raises(InvalidBatchError, match="finite"):
        decode_batch(body)


def test_decoder_refuses_a_map_where_an_array_belongs() -> None:
    body = msgspec.msgpack.encode({"version": 1, "device_id": "gw"})
    with pytest.raises(InvalidBatchError):
        decode_batch(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_bodies_raise_only_decode_errors(data: st.DataObject) -> None:
    body = bytearray(encode_batch(small_batch()))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    # refused cleanly, or (a mutation that lands on a value) still valid: nothing else escapes
    with contextlib.suppress(DecodeError):
        decode_batch(bytes(body))
