"""The messages of the MCU protocol and their byte layouts. Sans-I/O, no state.

Every integer is little-endian. A frame body is `type (u8) | payload`; `framing` wraps it in
COBS with a CRC. Layouts (docs/firmware-protocol.md is the normative text, with test vectors
generated from this module):

    HELLO          0x01  bridge→MCU  version u8 | window u16 | utc_ms u64 | flags u8
    HELLO_ACK      0x02  MCU→bridge  version u8 | boot u32 | uid u64 | mcu_ms u64 |
                                     first_boot u32 | first_seq u32 | channels u16 | firmware str8
    READING        0x10  MCU→bridge  boot u32 | seq u32 | channel u16 | flags u8 | quality u8 |
                                     ts_ms u64 | vtype u8 | value (f32 | f64 | i32 + exp i8)
    ACK            0x11  bridge→MCU  boot u32 | seq u32          (committed up to and including)
    RESEND         0x12  bridge→MCU  boot u32 | seq u32          (send again from this one)
    TIME_SYNC      0x20  bridge→MCU  utc_ms u64 | flags u8
    TIME_SYNC_ACK  0x21  MCU→bridge  utc_ms u64 | mcu_ms u64
    CHANNEL_INFO   0x30  MCU→bridge  channel u16 | metric str8 | unit str8
    ERROR          0x7F  both        code u16 | arg u32 | message str8

`str8` is a length byte followed by that many bytes of UTF-8 (at most MAX_STR bytes).

Invariants: `decode_body(encode_body(m)) == m` for every message; `decode_body` raises only
FrameError (a RemoteProtocolError) and never reads past the body; trailing bytes are an error, so
a frame has exactly one meaning. Encoding a message that breaks a field's range is a
LocalProtocolError: we never put bytes on the wire that a peer would have to reject.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

from firmware_bridge.errors import FrameError, LocalProtocolError

PROTOCOL_VERSION = 1
MAX_STR = 48
U32_MAX = 0xFFFF_FFFF


class FrameType(enum.IntEnum):
    HELLO = 0x01
    HELLO_ACK = 0x02
    READING = 0x10
    ACK = 0x11
    RESEND = 0x12
    TIME_SYNC = 0x20
    TIME_SYNC_ACK = 0x21
    CHANNEL_INFO = 0x30
    ERROR = 0x7F


class ErrorCode(enum.IntEnum):
    UNSUPPORTED_VERSION = 1  # arg: the highest version the sender speaks
    HANDSHAKE_REQUIRED = 2  # the MCU (re)booted or never got HELLO; also sent once at boot
    BAD_FRAME = 3  # the receiver dropped a damaged frame
    UNKNOWN_FRAME = 4  # arg: the frame type
    BAD_POSITION = 5  # RESEND named a reading the MCU no longer holds
    DATA_LOST = 6  # arg: readings the MCU discarded unacknowledged (storage full)
    SENSOR_FAULT = 7  # arg: channel
    STORAGE_FAULT = 8  # the MCU cannot persist readings


class ValueType(enum.IntEnum):
    F32 = 0
    F64 = 1
    I32_SCALED = 2  # value = raw * 10**exp


# READING flags
TS_UTC = 0x01  # ts_ms is UTC epoch ms (the MCU was synced); else ms since the MCU booted
TS_UNTRUSTED = 0x02  # the time the MCU was synced to was itself not trusted
END_OF_BOOT = 0x04  # the last reading the MCU holds from an earlier boot
READING_FLAGS = TS_UTC | TS_UNTRUSTED | END_OF_BOOT

# HELLO / TIME_SYNC flags
CLOCK_UNTRUSTED = 0x01


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    window: int
    utc_ms: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class HelloAck:
    version: int
    boot: int
    uid: int
    mcu_ms: int
    first_boot: int
    first_seq: int
    channels: int
    firmware: str


class McuPosition(NamedTuple):
    """Where a reading stands in one MCU's stream: its boot counter, then its sequence number
    within that boot. Ordered as a tuple, so `a <= b` means "a was sent no later than b". This is
    the one representation of a position: frames, the connection, ACK/RESEND, the watermark
    stores and the agent's buffer all use it (per MCU uid, which is kept beside it)."""

    boot: int
    seq: int


@dataclass(frozen=True, slots=True)
class ReadingFrame:
    boot: int
    seq: int
    channel: int
    flags: int
    quality: int
    ts_ms: int
    vtype: ValueType
    raw: float | int  # f32/f64: the float; I32_SCALED: the integer
    exp: int = 0  # I32_SCALED only

    @property
    def position(self) -> McuPosition:
        return McuPosition(self.boot, self.seq)

    @property
    def value(self) -> float:
        if self.vtype is ValueType.I32_SCALED:
            return float(self.raw) * 10.0**self.exp
        return float(self.raw)


@dataclass(frozen=True, slots=True)
class Ack:
    boot: int
    seq: int


@dataclass(frozen=True, slots=True)
class Resend:
    boot: int
    seq: int


@dataclass(frozen=True, slots=True)
class TimeSync:
    utc_ms: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class TimeSyncAck:
    utc_ms: int
    mcu_ms: int


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    channel: int
    metric: str
    unit: str


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: int
    arg: int = 0
    message: str = ""


Message = (
    Hello
    | HelloAck
    | ReadingFrame
    | Ack
    | Resend
    | TimeSync
    | TimeSyncAck
    | ChannelInfo
    | ErrorFrame
)

_HELLO = struct.Struct("<BHQB")
_HELLO_ACK = struct.Struct("<BIQQIIH")
_READING_HEAD = struct.Struct("<IIHBBQB")
_POS = struct.Struct("<II")
_TIME_SYNC = struct.Struct("<QB")
_TIME_SYNC_ACK = struct.Struct("<QQ")
_CHANNEL = struct.Struct("<H")
_ERROR = struct.Struct("<HI")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_I32_EXP = struct.Struct("<ib")


def _str8(text: str, field: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > MAX_STR:
        raise LocalProtocolError(f"{field}: {len(raw)} bytes of UTF-8, at most {MAX_STR}")
    return bytes([len(raw)]) + raw


def _read_str8(body: bytes, at: int, field: str) -> tuple[str, int]:
    if at >= len(body):
        raise FrameError(f"{field}: missing")
    n = body[at]
    end = at + 1 + n
    if n > MAX_STR or end > len(body):
        raise FrameError(f"{field}: length {n} runs past the frame or the limit")
    try:
        return body[at + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise FrameError(f"{field}: not UTF-8") from exc


def encode_body(msg: Message) -> bytes:
    """The frame body (type byte + payload) of one message."""
    try:
        return _encode(msg)
    except struct.error as exc:
        raise LocalProtocolError(f"{type(msg).__name__}: field out of range: {exc}") from exc


def _encode(msg: Message) -> bytes:
    if isinstance(msg, ReadingFrame):
        if msg.quality not in (0, 1, 2) or msg.flags & ~READING_FLAGS:
            raise LocalProtocolError("ReadingFrame: unknown quality or flags")
        head = _READING_HEAD.pack(
            msg.boot, msg.seq, msg.channel, msg.flags, msg.quality, msg.ts_ms, msg.vtype
        )
        if msg.vtype is ValueType.F32:
            value = _F32.pack(msg.raw)
        elif msg.vtype is ValueType.F64:
            value = _F64.pack(msg.raw)
        else:
            if not isinstance(msg.raw, int):
                raise LocalProtocolError("ReadingFrame: I32_SCALED needs an integer raw value")
            value = _I32_EXP.pack(msg.raw, msg.exp)
        return bytes([FrameType.READING]) + head + value
    if isinstance(msg, Hello):
        payload = _HELLO.pack(msg.version, msg.window, msg.utc_ms, msg.flags)
        return bytes([FrameType.HELLO]) + payload
    if isinstance(msg, HelloAck):
        return (
            bytes([FrameType.HELLO_ACK])
            + _HELLO_ACK.pack(
                msg.version,
                msg.boot,
                msg.uid,
                msg.mcu_ms,
                msg.first_boot,
                msg.first_seq,
                msg.channels,
            )
            + _str8(msg.firmware, "firmware")
        )
    if isinstance(msg, Ack):
        return bytes([FrameType.ACK]) + _POS.pack(msg.boot, msg.seq)
    if isinstance(msg, Resend):
        return bytes([FrameType.RESEND]) + _POS.pack(msg.boot, msg.seq)
    if isinstance(msg, TimeSync):
        return bytes([FrameType.TIME_SYNC]) + _TIME_SYNC.pack(msg.utc_ms, msg.flags)
    if isinstance(msg, TimeSyncAck):
        return bytes([FrameType.TIME_SYNC_ACK]) + _TIME_SYNC_ACK.pack(msg.utc_ms, msg.mcu_ms)
    if isinstance(msg, ChannelInfo):
        return (
            bytes([FrameType.CHANNEL_INFO])
            + _CHANNEL.pack(msg.channel)
            + _str8(msg.metric, "metric")
            + _str8(msg.unit, "unit")
        )
    return bytes([FrameType.ERROR]) + _ERROR.pack(msg.code, msg.arg) + _str8(msg.message, "message")


def _fixed(body: bytes, layout: struct.Struct, name: str) -> tuple[int, ...]:
    if len(body) != 1 + layout.size:
        raise FrameError(f"{name}: {len(body) - 1} payload bytes, expected {layout.size}")
    return layout.unpack_from(body, 1)


def decode_body(body: bytes) -> Message:
    """The message in one frame body; FrameError if it is not exactly one valid message."""
    if not body:
        raise FrameError("empty frame")
    kind = body[0]
    if kind == FrameType.READING:
        return _decode_reading(body)
    if kind == FrameType.HELLO:
        version, window, utc_ms, flags = _fixed(body, _HELLO, "HELLO")
        return Hello(version, window, utc_ms, flags)
    if kind == FrameType.HELLO_ACK:
        if len(body) < 1 + _HELLO_ACK.size:
            raise FrameError("HELLO_ACK: too short")
        version, boot, uid, mcu_ms, first_boot, first_seq, channels = _HELLO_ACK.unpack_from(
            body, 1
        )
        firmware, end = _read_str8(body, 1 + _HELLO_ACK.size, "firmware")
        if end != len(body):
            raise FrameError("HELLO_ACK: trailing bytes")
        return HelloAck(version, boot, uid, mcu_ms, first_boot, first_seq, channels, firmware)
    if kind == FrameType.ACK:
        return Ack(*_fixed(body, _POS, "ACK"))
    if kind == FrameType.RESEND:
        return Resend(*_fixed(body, _POS, "RESEND"))
    if kind == FrameType.TIME_SYNC:
        return TimeSync(*_fixed(body, _TIME_SYNC, "TIME_SYNC"))
    if kind == FrameType.TIME_SYNC_ACK:
        return TimeSyncAck(*_fixed(body, _TIME_SYNC_ACK, "TIME_SYNC_ACK"))
    if kind == FrameType.CHANNEL_INFO:
        if len(body) < 1 + _CHANNEL.size:
            raise FrameError("CHANNEL_INFO: too short")
        (channel,) = _CHANNEL.unpack_from(body, 1)
        metric, at = _read_str8(body, 1 + _CHANNEL.size, "metric")
        unit, end = _read_str8(body, at, "unit")
        if end != len(body):
            raise FrameError("CHANNEL_INFO: trailing bytes")
        return ChannelInfo(channel, metric, unit)
    if kind == FrameType.ERROR:
        if len(body) < 1 + _ERROR.size:
            raise FrameError("ERROR: too short")
        code, arg = _ERROR.unpack_from(body, 1)
        message, end = _read_str8(body, 1 + _ERROR.size, "message")
        if end != len(body):
            raise FrameError("ERROR: trailing bytes")
        return ErrorFrame(code, arg, message)
    raise FrameError(f"unknown frame type 0x{kind:02x}")


def _decode_reading(body: bytes) -> ReadingFrame:
    head = 1 + _READING_HEAD.size
    if len(body) < head:
        raise FrameError("READING: too short")
    boot, seq, channel, flags, quality, ts_ms, vtype = _READING_HEAD.unpack_from(body, 1)
    if quality > 2:
        raise FrameError(f"READING: unknown quality {quality}")
    if flags & ~READING_FLAGS:
        raise FrameError(f"READING: unknown flags 0x{flags:02x}")
    rest = len(body) - head
    exp = 0
    raw: float | int
    if vtype == ValueType.F32 and rest == _F32.size:
        (raw,) = _F32.unpack_from(body, head)
    elif vtype == ValueType.F64 and rest == _F64.size:
        (raw,) = _F64.unpack_from(body, head)
    elif vtype == ValueType.I32_SCALED and rest == _I32_EXP.size:
        raw, exp = _I32_EXP.unpack_from(body, head)
    else:
        raise FrameError(f"READING: value type {vtype} with {rest} value bytes")
    return ReadingFrame(boot, seq, channel, flags, quality, ts_ms, ValueType(vtype), raw, exp)
