"""COBS framing with a CRC: the byte-stream layer of the MCU protocol. Sans-I/O.

Wire layout of one frame (docs/firmware-protocol.md has the full text and test vectors):

    0x00 | COBS( body | crc16_le(body) ) | 0x00        body = type (1 byte) | payload

Invariants:
- 0x00 never appears inside an encoded frame, so a receiver resynchronises at the next 0x00
  after any damage, whatever the damage was. The leading 0x00 is optional for receivers; senders
  emit it so that a receiver that joined mid-frame discards the partial frame at once.
- The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR; check
  value 0x29B1 for b"123456789") over the body, appended little-endian.
- A body is 1..MAX_BODY bytes; the decoder never buffers more than MAX_ENCODED bytes of one frame,
  so a peer that never sends 0x00 cannot make it grow without bound.
- Decoding never raises: damage is reported as a `FrameError` *value* in the output, counted in
  `FramingStats`, and the decoder goes on with the next frame.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from firmware_bridge.errors import FrameError

DELIMITER = 0
MAX_BODY = 254  # type + payload; with the CRC a frame carries at most 256 bytes before COBS
MAX_ENCODED = MAX_BODY + 2 + 2  # COBS adds one code byte per 254 data bytes, plus one


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE. `binascii.crc_hqx` is exactly this polynomial, unreflected, in C."""
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result contains no 0x00 byte.

    A run of 254 non-zero bytes that ends the data gets no trailing 0x01 block (receivers must
    accept both forms; `cobs_decode` does).
    """
    out = bytearray()
    start = 0
    n = len(data)
    while True:
        zero = data.find(b"\x00", start, start + 254)
        if zero == -1:
            end = min(n, start + 254)
            out.append(end - start + 1)
            out += data[start:end]
            if end == n:
                return bytes(out)
            start = end  # a full 254-byte block: code 0xFF, no implied zero
            continue
        out.append(zero - start + 1)
        out += data[start:zero]
        start = zero + 1
        if start == n:
            out.append(1)
            return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Inverse of `cobs_encode`; FrameError if `data` is not a valid COBS encoding."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("COBS: 0x00 inside a frame")
        end = i + code
        if end > n:
            raise FrameError("COBS: a block runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameError("COBS: 0x00 inside a frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(body: bytes) -> bytes:
    """One frame on the wire, delimiters included."""
    if not 1 <= len(body) <= MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes; must be 1..{MAX_BODY}")
    return b"\x00" + cobs_encode(body + crc16(body).to_bytes(2, "little")) + b"\x00"


@dataclass(slots=True)
class FramingStats:
    """What the decoder saw; every byte that was not part of a good frame is counted."""

    frames: int = 0  # good frames returned
    damaged: int = 0  # frames dropped: bad COBS, bad CRC, too short
    oversized: int = 0  # runs longer than MAX_ENCODED without a delimiter
    discarded_bytes: int = 0  # bytes thrown away with damaged or oversized frames


class FrameDecoder:
    """Bytes in, frame bodies (or FrameError values for damaged frames) out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside an oversized run: drop until the next delimiter
        self.stats = FramingStats()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | FrameError]:
        """Every complete frame in `data` plus what was buffered before, in order."""
        out: list[bytes | FrameError] = []
        buf = self._buf
        buf += data
        start = 0
        while True:
            end = buf.find(0, start)
            if end == -1:
                break
            if self._skipping:
                self._skipping = False
                self.stats.discarded_bytes += end - start
            elif end > start:
                out.append(self._decode(bytes(buf[start:end])))
            start = end + 1
        rest = len(buf) - start
        if rest > MAX_ENCODED:
            if not self._skipping:
                self.stats.oversized += 1
                out.append(FrameError(f"no delimiter within {MAX_ENCODED} bytes"))
            self._skipping = True
            self.stats.discarded_bytes += rest
            start = len(buf)
        del buf[:start]
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back (a partial frame at a timeout)."""
        return len(self._buf)

    def _decode(self, encoded: bytes) -> bytes | FrameError:
        n = len(encoded)
        try:
            raw = cobs_decode(encoded)
        except FrameError as exc:
            return self._damaged(exc, n)
        if len(raw) < 3:
            return self._damaged(FrameError(f"frame of {len(raw)} bytes is too short"), n)
        body = raw[:-2]
        if crc16(body) != int.from_bytes(raw[-2:], "little"):
            return self._damaged(FrameError("CRC mismatch"), n)
        self.stats.frames += 1
        return body

    def _damaged(self, exc: FrameError, n: int) -> FrameError:
        self.stats.damaged += 1
        self.stats.discarded_bytes += n
        return exc
