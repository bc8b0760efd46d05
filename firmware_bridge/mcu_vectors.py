"""The MCU protocol's test vectors: one frame of every kind, as bytes on the wire.

docs/firmware-protocol.md carries the table this module prints (`python -m
firmware_bridge.mcu_vectors`), between the markers `<!-- vectors:begin -->` and
`<!-- vectors:end -->`; a test parses the document and checks every line against the encoder, so
the document cannot drift from the code. Firmware teams check their C encoder and decoder against
the same hex.
"""

from __future__ import annotations

from firmware_bridge.framing import encode_frame
from firmware_bridge.mcu_frames import (
    CLOCK_UNTRUSTED,
    END_OF_BOOT,
    PROTOCOL_VERSION,
    TS_UTC,
    Ack,
    ChannelInfo,
    ErrorCode,
    ErrorFrame,
    Hello,
    HelloAck,
    Message,
    ReadingFrame,
    Resend,
    TimeSync,
    TimeSyncAck,
    ValueType,
    encode_body,
)

UID = 0x0123_4567_89AB_CDEF
UTC = 1_767_225_600_000  # 2026-01-01T00:00:00Z

VECTORS: list[tuple[str, Message]] = [
    ("hello", Hello(PROTOCOL_VERSION, 512, UTC, 0)),
    ("hello_untrusted_clock", Hello(PROTOCOL_VERSION, 64, UTC, CLOCK_UNTRUSTED)),
    ("hello_ack", HelloAck(PROTOCOL_VERSION, 7, UID, 12_345, 6, 40, 2, "fw-1.2.0")),
    ("reading_f32_boot_ms", ReadingFrame(7, 0, 0, 0, 0, 1500, ValueType.F32, 21.5)),
    ("reading_f64_utc", ReadingFrame(7, 1, 1, TS_UTC, 0, UTC + 250, ValueType.F64, 12345.678)),
    (
        "reading_i32_scaled_uncertain",
        ReadingFrame(7, 2, 2, TS_UTC, 1, UTC + 500, ValueType.I32_SCALED, -12345, -2),
    ),
    ("reading_end_of_boot", ReadingFrame(6, 41, 0, END_OF_BOOT, 2, 99_000, ValueType.F32, 0.0)),
    ("reading_zero_bytes", ReadingFrame(0, 0, 0, 0, 0, 0, ValueType.F32, 0.0)),
    ("ack", Ack(7, 2)),
    ("resend", Resend(7, 1)),
    ("time_sync", TimeSync(UTC + 60_000, 0)),
    ("time_sync_ack", TimeSyncAck(UTC + 60_000, 72_345)),
    ("channel_info", ChannelInfo(1, "line_pressure", "bar")),
    ("error_handshake_required", ErrorFrame(ErrorCode.HANDSHAKE_REQUIRED, 0, "boot")),
    ("error_data_lost", ErrorFrame(ErrorCode.DATA_LOST, 1000, "")),
]


def wire_bytes(msg: Message) -> bytes:
    return encode_frame(encode_body(msg))


def render() -> str:
    """The vector lines for the document: `name: hex`, one frame per line, delimiters included."""
    return "\n".join(f"{name}: {wire_bytes(msg).hex(' ')}" for name, msg in VECTORS)


if __name__ == "__main__":
    print(render())
