from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.errors import FrameError
from firmware_bridge.framing import (
    MAX_BODY,
    MAX_ENCODED,
    FrameDecoder,
    cobs_decode,
    cobs_encode,
    crc16,
    encode_frame,
)

# (data, COBS encoding): the examples of Cheshire & Baker's paper and the usual edge cases.
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
]


@pytest.mark.parametrize(("data", "encoded"), COBS_VECTORS)
def test_cobs_vectors(data: bytes, encoded: bytes) -> None:
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data


def test_cobs_decoder_accepts_trailing_code_after_full_block() -> None:
    # The other common encoder emits 0x01 after a final 254-byte run; both forms must decode.
    data = bytes(range(1, 255))
    assert cobs_decode(b"\xff" + data + b"\x01") == data


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x02\x00", b"\x00"])
def test_cobs_rejects_invalid(bad: bytes) -> None:
    with pytest.raises(FrameError):
        cobs_decode(bad)


def test_crc16_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE catalogue check value
    assert crc16(b"") == 0xFFFF


def _frames(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes | FrameError]:
    out: list[bytes | FrameError] = []
    for c in chunks:
        out += decoder.feed(c)
    return out


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_decoder_frames_whole_and_bytewise(split: str) -> None:
    bodies = [b"\x10", b"\x11\x00\x00", bytes(range(MAX_BODY)), b"\x7f" + b"\x00" * 20]
    stream = b"".join(encode_frame(b) for b in bodies)
    chunks = [stream] if split == "whole" else [bytes([b]) for b in stream]
    decoder = FrameDecoder()
    assert _frames(decoder, chunks) == bodies
    assert decoder.stats.frames == len(bodies)
    assert decoder.stats.damaged == 0
    assert decoder.buffered == 0


def test_decoder_resyncs_after_garbage_and_bad_crc() -> None:
    good = encode_frame(b"\x11abc")
    damaged = bytearray(encode_frame(b"\x11xyz"))
    damaged[3] ^= 0x01
    stream = b"\xde\xad\xbe\xef" + good + bytes(damaged) + b"\x00\x00" + good
    decoder = FrameDecoder()
    out = _frames(decoder, [bytes([b]) for b in stream])
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["FrameError", "bytes", "FrameError", "bytes"]
    assert out[1] == out[3] == b"\x11abc"
    assert decoder.stats.damaged == 2


def test_decoder_bounds_a_frame_without_delimiter() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(b"\x01" * (MAX_ENCODED * 3))
    assert len(out) == 1
    assert isinstance(out[0], FrameError)
    assert decoder.buffered == 0
    assert decoder.stats.oversized == 1
    # the next delimiter ends the skipping; the frame after it decodes
    assert decoder.feed(b"\x01\x01\x00" + encode_frame(b"\x10ok")) == [b"\x10ok"]


def test_encode_frame_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="frame body"):
        encode_frame(b"")
    with pytest.raises(ValueError, match="frame body"):
        encode_frame(b"\x01" * (MAX_BODY + 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_cobs_roundtrip(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=MAX_BODY), max_size=5), st.data())
def test_decoder_roundtrip_any_split(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _frames(FrameDecoder(), chunks) == bodies


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_decoder_never_raises_on_noise(noise: bytes) -> None:
    decoder = FrameDecoder()
    for item in decoder.feed(noise):
        assert isinstance(item, bytes | FrameError)
    assert decoder.buffered <= MAX_ENCODED
