"""Mettler Toledo standard continuous output: binary-status frames in, canonical text lines out.
Sans-I/O.

The format (Mettler Toledo terminal technical manuals, e.g. IND560/IND780 appendix "Continuous
Output", WILDCAT appendix 2 "Continuous Mode Output"), 17 or 18 bytes:

    STX SWA SWB SWC  D D D D D D  T T T T T T  CR [CKS]

- SWA bits 0-2: decimal point (0: ×100, 1: ×10, 2: ×1, 3: 0.X, 4: 0.XX, 5: 0.XXX, 6: 0.XXXX,
  7: 0.XXXXX); bits 3-4: increment (1, 2, 5); bit 5 always 1.
- SWB bit 0 net, bit 1 negative, bit 2 out of range, bit 3 motion, bit 4 kg (0: lb), bit 5
  always 1.
- SWC bits 0-2: 0 lb/kg per SWB, 1 g, 2 t, 3 oz, 4 ozt, 5 dwt, 6 long ton, 7 custom; bit 3 print
  request; bit 4 data expanded ×10; bit 5 always 1.
- D: six digits of displayed weight (gross or net, per SWB bit 0), T: six digits of tare, both
  without a decimal point (SWA places it).
- CKS (optional, `checksum=True`): the two's complement of the 7 low bits of the sum of every
  byte from STX to CR, so the sum of the frame with its checksum is 0 modulo 128.

`ToledoFramer.feed(bytes)` returns, per frame, either a canonical line
`"<G|N> <S|D|O> <weight> <unit> <tare>"` (weight and tare with their decimal point; `S` stable,
`D` motion, `O` out of range) for the ASCII source's `toledo-continuous` preset to parse, or a
`BadFrame` naming what was wrong (checksum, a status byte without its fixed bits, digits that
are not digits). Bytes before an STX are skipped and counted. A frame with the "expanded ×10"
bit is decoded like any other (the manuals use it for a test mode): it is counted in
`stats.expanded`.
"""

from __future__ import annotations

from dataclasses import dataclass

STX = 0x02
CR = 0x0D
FRAME = 17  # STX .. CR

_SCALES = {
    0: (100, 0),
    1: (10, 0),
    2: (1, 0),
    3: (1, 1),
    4: (1, 2),
    5: (1, 3),
    6: (1, 4),
    7: (1, 5),
}
_UNITS = {1: "g", 2: "t", 3: "oz", 4: "ozt", 5: "dwt", 6: "ton_long", 7: "custom"}


@dataclass(slots=True)
class ToledoStats:
    frames: int = 0
    bad_checksum: int = 0
    bad_frames: int = 0
    skipped_bytes: int = 0
    expanded: int = 0


@dataclass(frozen=True, slots=True)
class BadFrame:
    reason: str


def checksum(body: bytes) -> int:
    """The checksum byte for `body` (STX through CR)."""
    return (-sum(body)) & 0x7F


def _number(digits: bytes, multiplier: int, decimals: int) -> str | None:
    if not digits.isdigit():
        return None
    value = int(digits) * multiplier
    if decimals == 0:
        return str(value)
    text = str(value).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}"


def decode(frame: bytes) -> str | BadFrame:
    """One frame (STX through CR, checksum already checked) as its canonical line."""
    swa, swb, swc = frame[1], frame[2], frame[3]
    if frame[0] != STX or frame[16] != CR:
        return BadFrame("not framed by STX and CR")
    if swa & 0x60 != 0x20 or swb & 0x20 != 0x20 or swc & 0x60 != 0x20:
        return BadFrame(f"status bytes {swa:02X} {swb:02X} {swc:02X} lack their fixed bits")
    multiplier, decimals = _SCALES[swa & 0x07]
    weight = _number(frame[4:10], multiplier, decimals)
    tare = _number(frame[10:16], multiplier, decimals)
    if weight is None or tare is None:
        return BadFrame("weight or tare digits are not digits")
    sign = "-" if swb & 0x02 else ""
    code = swc & 0x07
    unit = ("kg" if swb & 0x10 else "lb") if code == 0 else _UNITS[code]
    status = "O" if swb & 0x04 else "D" if swb & 0x08 else "S"
    mode = "N" if swb & 0x01 else "G"
    return f"{mode} {status} {sign}{weight} {unit} {tare}"


class ToledoFramer:
    """Bytes in, canonical lines (or `BadFrame`s) out; see the module docstring."""

    def __init__(self, *, checksum: bool = True) -> None:
        self._checksum = checksum
        self._size = FRAME + (1 if checksum else 0)
        self._buf = bytearray()
        self.stats = ToledoStats()

    def feed(self, data: bytes) -> list[str | BadFrame]:
        out: list[str | BadFrame] = []
        buf = self._buf
        buf += data
        while True:
            start = buf.find(STX)
            if start == -1:
                self.stats.skipped_bytes += len(buf)
                buf.clear()
                return out
            if start:
                self.stats.skipped_bytes += start
                del buf[:start]
            if len(buf) < self._size:
                return out
            frame = bytes(buf[: self._size])
            if frame[16] != CR:  # a stray STX, or a frame cut short: resync at the next STX
                self.stats.skipped_bytes += 1
                del buf[:1]
                continue
            del buf[: self._size]
            self.stats.frames += 1
            if self._checksum and checksum(frame[:FRAME]) != frame[FRAME]:
                self.stats.bad_checksum += 1
                out.append(
                    BadFrame(f"checksum {frame[FRAME]:02X}, computed {checksum(frame[:FRAME]):02X}")
                )
                continue
            if frame[3] & 0x10:
                self.stats.expanded += 1
            line = decode(frame[:FRAME])
            if isinstance(line, BadFrame):
                self.stats.bad_frames += 1
            out.append(line)

    @property
    def partial(self) -> int:
        """Bytes of an unfinished frame held back."""
        return len(self._buf)

    def reset(self) -> int:
        """Forget an unfinished frame; how many bytes it had."""
        n = len(self._buf)
        self._buf.clear()
        return n
