from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.errors import FrameError, LocalProtocolError, RemoteProtocolError
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.mcu_connection import NEED_DATA, Connection, Damaged, Role
from firmware_bridge.mcu_frames import (
    Ack,
    ChannelInfo,
    ErrorFrame,
    Hello,
    HelloAck,
    ReadingFrame,
    Resend,
    TimeSync,
    TimeSyncAck,
    ValueType,
    decode_body,
    encode_body,
)
from firmware_bridge.mcu_vectors import VECTORS, wire_bytes

MCU_MESSAGES = (HelloAck, ReadingFrame, TimeSyncAck, ChannelInfo, ErrorFrame)


def _receiver_for(msg: object) -> Connection:
    """A connection that may receive `msg`: the bridge for MCU messages, else the MCU."""
    if isinstance(msg, MCU_MESSAGES) and not isinstance(msg, ErrorFrame):
        conn = Connection(Role.BRIDGE)
        # readings are only events after a handshake; start the stream where the vector is
        if isinstance(msg, ReadingFrame):
            conn.receive_data(wire_bytes(HelloAck(1, msg.boot, 1, 0, msg.boot, msg.seq, 1, "t")))
            assert isinstance(conn.next_event(), HelloAck)
        return conn
    return Connection(Role.MCU)


@pytest.mark.parametrize(("name", "msg"), VECTORS, ids=[n for n, _ in VECTORS])
@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_vector_decodes_whole_and_bytewise(name: str, msg: object, split: str) -> None:
    data = wire_bytes(msg)  # type: ignore[arg-type]
    conn = _receiver_for(msg)
    if split == "whole":
        conn.receive_data(data)
    else:
        for b in data:
            conn.receive_data(bytes([b]))
    assert conn.next_event() == msg
    assert conn.next_event() is NEED_DATA


@pytest.mark.parametrize(("name", "msg"), VECTORS, ids=[n for n, _ in VECTORS])
def test_vector_body_roundtrip(name: str, msg: object) -> None:
    body = encode_body(msg)  # type: ignore[arg-type]
    assert decode_body(body) == msg


def test_layouts_are_the_documented_sizes() -> None:
    assert len(encode_body(Hello(1, 1, 0))) == 1 + 12
    assert len(encode_body(Ack(0, 0))) == 1 + 8
    assert len(encode_body(TimeSync(0))) == 1 + 9
    assert len(encode_body(TimeSyncAck(0, 0))) == 1 + 16
    r = ReadingFrame(0, 0, 0, 0, 0, 0, ValueType.F32, 0.0)
    assert len(encode_body(r)) == 1 + 21 + 4


def test_scaled_integer_value() -> None:
    r = ReadingFrame(1, 2, 3, 0, 0, 4, ValueType.I32_SCALED, -12345, -2)
    assert decode_body(encode_body(r)).value == pytest.approx(-123.45)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty"),
        (b"\x55", "unknown frame type"),
        (b"\x11" + b"\x00" * 7, "ACK"),
        (b"\x11" + b"\x00" * 9, "ACK"),
        (encode_body(ChannelInfo(1, "m", "u")) + b"x", "trailing"),
        (b"\x30\x01\x00\x05ab", "length"),
        (b"\x7f\x01\x00\x00\x00\x00\x00\x02\xff\xfe", "UTF-8"),
        (encode_body(ReadingFrame(0, 0, 0, 0, 0, 0, ValueType.F32, 0.0))[:-1], "value type"),
        (b"\x10" + struct.pack("<IIHBBQB", 0, 0, 0, 0, 3, 0, 0) + b"\x00" * 4, "quality"),
        (b"\x10" + struct.pack("<IIHBBQB", 0, 0, 0, 0x80, 0, 0, 0) + b"\x00" * 4, "flags"),
        (b"\x10" + struct.pack("<IIHBBQB", 0, 0, 0, 0, 0, 0, 9) + b"\x00" * 4, "value type"),
    ],
)
def test_decode_rejects_malformed_bodies(body: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        decode_body(body)


def test_remote_errors_name_the_peer() -> None:
    with pytest.raises(FrameError) as info:
        decode_body(b"\x55")
    assert info.value.remote is True
    with pytest.raises(LocalProtocolError) as local:
        encode_body(ChannelInfo(1, "x" * 100, ""))
    assert local.value.remote is False


@pytest.mark.parametrize(
    "msg",
    [
        Ack(-1, 0),
        Hello(1, 70000, 0),
        ReadingFrame(0, 0, 0, 0, 5, 0, ValueType.F32, 0.0),
        ReadingFrame(0, 0, 0, 0x40, 0, 0, ValueType.F32, 0.0),
        ReadingFrame(0, 0, 0, 0, 0, 0, ValueType.I32_SCALED, 1.5),
    ],
)
def test_encode_refuses_out_of_range_fields(msg: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode_body(msg)  # type: ignore[arg-type]


u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
text = st.text(max_size=16)
messages = st.one_of(
    st.builds(Hello, st.integers(0, 255), st.integers(0, 65535), u64, st.integers(0, 255)),
    st.builds(HelloAck, st.integers(0, 255), u32, u64, u64, u32, u32, st.integers(0, 65535), text),
    st.builds(
        ReadingFrame,
        u32,
        u32,
        st.integers(0, 65535),
        st.integers(0, 7),
        st.integers(0, 2),
        u64,
        st.just(ValueType.F64),
        st.floats(allow_nan=False),
    ),
    st.builds(
        ReadingFrame,
        u32,
        u32,
        st.integers(0, 65535),
        st.integers(0, 7),
        st.integers(0, 2),
        u64,
        st.just(ValueType.I32_SCALED),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-128, 127),
    ),
    st.builds(Ack, u32, u32),
    st.builds(Resend, u32, u32),
    st.builds(TimeSync, u64, st.integers(0, 255)),
    st.builds(TimeSyncAck, u64, u64),
    st.builds(ChannelInfo, st.integers(0, 65535), text, text),
    st.builds(ErrorFrame, st.integers(0, 65535), u32, text),
)


@settings(max_examples=400, deadline=None)
@given(messages)
def test_roundtrip_property(msg: object) -> None:
    assert decode_body(encode_body(msg)) == msg  # type: ignore[arg-type]


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=80))
def test_decode_body_raises_only_frame_error(body: bytes) -> None:
    try:
        msg = decode_body(body)
    except FrameError:
        return
    assert encode_body(msg) == body or (
        isinstance(msg, ReadingFrame)
        and msg.vtype is not ValueType.I32_SCALED
        and math.isnan(msg.raw)
    )


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([wire_bytes(m) for _, m in VECTORS]), st.data())
def test_mutated_frames_are_damaged_or_valid(frame: bytes, data: st.DataObject) -> None:
    """Flip, insert or delete bytes in a good frame: the decoders only ever report FrameError,
    and a connection only ever raises RemoteProtocolError."""
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if op == "flip" and mutated:
            mutated[i] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            mutated.insert(i, data.draw(st.integers(0, 255)))
        elif mutated:
            del mutated[i]
    for item in FrameDecoder().feed(bytes(mutated)):
        if isinstance(item, bytes):
            with contextlib.suppress(FrameError):
                decode_body(item)
    for role in Role:
        conn = Connection(role)
        try:
            conn.receive_data(bytes(mutated))
        except RemoteProtocolError:
            continue
        while (ev := conn.next_event()) is not NEED_DATA:
            assert ev is not None
            if isinstance(ev, Damaged):
                assert ev.reason
