"""Content-coding: round trips, negotiation, and bombs stopped at the cap with bounded memory."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from wire.compression import (
    available_encodings,
    choose_encoding,
    compress,
    decompress,
)
from wire.errors import DecodeError, InvalidBatchError, TooLargeError, UnsupportedEncodingError

CAP = 8 * 1024 * 1024


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "identity"])
def test_round_trip(encoding: str) -> None:
    body = b"tierless " * 1000
    assert decompress(compress(body, encoding), encoding, CAP) == body


def test_negotiation_prefers_zstd_and_falls_back_to_gzip() -> None:
    assert available_encodings() == ("zstd", "gzip")
    assert choose_encoding("zstd, gzip") == "zstd"
    assert choose_encoding("gzip") == "gzip"
    assert choose_encoding(None) == "gzip"
    assert choose_encoding("br") == "gzip"


def gzip_bomb(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    parts = [c.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + c.flush()


def zstd_bomb(size: int) -> bytes:
    # A frame that declares no content size and expands 1 GiB of zeros: the decoder may not
    # trust or allocate for what the frame says, only count what it has produced.
    cctx = zstandard.ZstdCompressor(level=19, write_content_size=False)
    chunk = bytes(1024 * 1024)
    obj = cctx.compressobj()
    parts = [obj.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + obj.flush()


@pytest.mark.parametrize(("encoding", "make"), [("gzip", gzip_bomb), ("zstd", zstd_bomb)])
def test_bombs_stop_at_the_cap_with_bounded_memory(encoding: str, make: object) -> None:
    assert callable(make)
    bomb = make(1024 * 1024 * 1024)
    assert len(bomb) < 2 * 1024 * 1024  # small enough to pass the wire cap
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError):
            decompress(bomb, encoding, CAP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * CAP


def test_zstd_frame_that_lies_about_its_size_is_still_capped() -> None:
    body = bytes(32 * 1024 * 1024)
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(body)
    with pytest.raises(TooLargeError):
        decompress(frame, "zstd", CAP)


def test_gzip_with_a_second_member_or_trailing_bytes_is_refused() -> None:
    one = gzip.compress(b"a")
    with pytest.raises(InvalidBatchError, match="after its end"):
        decompress(one + one, "gzip", CAP)
    with pytest.raises(InvalidBatchError, match="after its end"):
        decompress(one + b"junk", "gzip", CAP)


def test_truncated_bodies_are_refused() -> None:
    body = bytes(range(256)) * 100
    with pytest.raises(InvalidBatchError, match="truncated"):
        decompress(compress(body, "gzip")[:-10], "gzip", CAP)
    with pytest.raises(InvalidBatchError, match="truncated"):
        decompress(compress(body, "zstd")[:-10], "zstd", CAP)


def test_zstd_with_a_second_frame_is_refused() -> None:
    one = compress(b"a" * 100, "zstd")
    with pytest.raises(InvalidBatchError, match="after its frame"):
        decompress(one + one, "zstd", CAP)


def test_identity_is_capped_too() -> None:
    with pytest.raises(TooLargeError):
        decompress(b"x" * 11, None, 10)


@pytest.mark.parametrize("encoding", ["br", "gzip, gzip", "deflate", "x-gzip"])
def test_unknown_codings_are_refused(encoding: str) -> None:
    with pytest.raises(UnsupportedEncodingError):
        decompress(b"", encoding, CAP)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["gzip", "zstd"]))
def test_garbage_raises_only_decode_errors(data: bytes, encoding: str) -> None:
    with pytest.raises(DecodeError):
        decompress(data, encoding, CAP)
