"""Register maps: which registers hold which value, how to decode them, and how to read them in
as few requests as the device allows. Pure functions; no I/O.

Decoding: a value of type T spans `REGISTERS[T]` 16-bit registers. `word_order` says which
register holds the most significant word ("big": the first, as in the Modbus spec's examples;
"little": the last). `byte_order` says how the two bytes inside each register are ordered ("big":
high byte first, as every register travels on the wire; "little": swapped). So for a float32
with bytes ABCD (A most significant): big/big = AB CD, little/big = CD AB, big/little = BA DC,
little/little = DC BA. The result is `raw * scale + offset`.

Planning: points of one unit and one function code are sorted by address and merged into one
request while the merged span stays within `max_registers` and the hole between neighbours is at
most `max_gap` registers (holes are read and ignored; 0 merges only touching registers). A point
never straddles two requests. Overlapping points are allowed (two views of one register).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from wire.units import Kind, Limits

DataType = Literal["u16", "i16", "u32", "i32", "float32", "float64"]
Order = Literal["big", "little"]

REGISTERS: dict[str, int] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "float32": 2,
    "float64": 4,
}
_FORMAT: dict[str, str] = {
    "u16": ">H",
    "i16": ">h",
    "u32": ">I",
    "i32": ">i",
    "float32": ">f",
    "float64": ">d",
}


def words_to_bytes(words: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    """The value's bytes, most significant first, from registers as they came off the wire."""
    regs = list(words) if word_order == "big" else list(reversed(words))
    out = bytearray()
    for w in regs:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((hi, lo)) if byte_order == "big" else bytes((lo, hi))
    return bytes(out)


def decode_words(
    words: Sequence[int], dtype: DataType, word_order: Order = "big", byte_order: Order = "big"
) -> float:
    """The raw value held by `words` (exactly REGISTERS[dtype] of them)."""
    if len(words) != REGISTERS[dtype]:
        raise ValueError(f"{dtype} needs {REGISTERS[dtype]} registers, got {len(words)}")
    (value,) = struct.unpack(_FORMAT[dtype], words_to_bytes(words, word_order, byte_order))
    return float(value)


def encode_words(
    value: float, dtype: DataType, word_order: Order = "big", byte_order: Order = "big"
) -> list[int]:
    """Inverse of `decode_words`: the registers a device would hold for `value`."""
    fmt = _FORMAT[dtype]
    raw = struct.pack(fmt, value if dtype.startswith("float") else int(value))
    regs = []
    for i in range(0, len(raw), 2):
        hi, lo = raw[i], raw[i + 1]
        regs.append((hi << 8) | lo if byte_order == "big" else (lo << 8) | hi)
    return regs if word_order == "big" else list(reversed(regs))


@dataclass(frozen=True, slots=True)
class Point:
    """One value in one device's registers, with everything needed to make a reading of it."""

    metric: str
    function: Literal[3, 4]
    address: int
    dtype: DataType
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    site: str = ""
    area: str = ""
    process: str = ""
    medium: str = ""
    kind: Kind = Kind.GAUGE
    limits: Limits = Limits()

    @property
    def count(self) -> int:
        return REGISTERS[self.dtype]

    @property
    def end(self) -> int:
        return self.address + self.count

    def value(self, words: Sequence[int]) -> float:
        """The engineering value; may be NaN/inf for a float register (the caller flags it)."""
        raw = decode_words(words, self.dtype, self.word_order, self.byte_order)
        if math.isfinite(raw):
            return raw * self.scale + self.offset
        return raw

    def problem(self, value: float) -> str | None:
        """Why `value` cannot be GOOD (`non_finite`, `out_of_range`), or None."""
        return self.limits.problem(value)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: `count` registers from `address` with function 3 or 4, feeding `points`."""

    unit: int
    function: Literal[3, 4]
    address: int
    count: int
    points: tuple[Point, ...]

    def decode(self, words: Sequence[int]) -> list[tuple[Point, float]]:
        """Each point's value from this request's registers."""
        if len(words) < self.count:
            raise ValueError(f"{len(words)} registers for a request of {self.count}")
        return [
            (p, p.value(words[p.address - self.address : p.end - self.address]))
            for p in self.points
        ]


def plan_requests(
    unit: int, points: Sequence[Point], *, max_registers: int = 125, max_gap: int = 0
) -> list[ReadRequest]:
    """As few requests as possible under the two limits; see the module docstring."""
    if not 1 <= max_registers <= 125:
        raise ValueError("max_registers must be 1..125 (the Modbus limit for function 3/4)")
    out: list[ReadRequest] = []
    for function in (3, 4):
        group = sorted((p for p in points if p.function == function), key=lambda p: p.address)
        start = end = -1
        members: list[Point] = []
        for p in group:
            if p.count > max_registers:
                raise ValueError(f"{p.metric}: {p.count} registers exceed max {max_registers}")
            if members and p.address - end <= max_gap and max(end, p.end) - start <= max_registers:
                members.append(p)
                end = max(end, p.end)
                continue
            if members:
                out.append(ReadRequest(unit, function, start, end - start, tuple(members)))
            start, end, members = p.address, p.end, [p]
        if members:
            out.append(ReadRequest(unit, function, start, end - start, tuple(members)))
    return out
