"""Simulated scales and weighbridge indicators on pseudo-terminals, in three documented formats.

The device side for the tests of the ASCII source (polled and streaming, late answers, silence,
unplugging) and of weighbridge tickets. The frames are built from the manufacturers' manuals:

- **MT-SICS** (`mt_sics_line`): Mettler Toledo, *MT-SICS Interface Commands* reference manual
  (e.g. 11780711), commands `S`/`SI` (answer `S S <weight> <unit>` stable, `S D …` dynamic) and
  `SIR` (the same answers repeated). CR LF after every command and answer.
- **Toledo continuous** (`toledo_frame`): Mettler Toledo terminals' *Standard Continuous Output*
  (IND560/IND780 technical manuals, appendix "Continuous Output"; the same format in the
  WILDCAT technical manual, appendix 2 "Continuous Mode Output"): STX, status words A, B, C,
  six digits of displayed weight and six of tare without a decimal point, CR, and an optional
  checksum: the two's complement of the 7 low bits of the sum of every byte from STX to CR.
  Status word A bits 0-2 place the decimal point (code 0: ×100, 1: ×10, 2: ×1, 3: 0.X, 4: 0.XX,
  5: 0.XXX, 6: 0.XXXX, 7: 0.XXXXX), bits 3-4 the increment (1, 2, 5), bit 5 always 1. Status
  word B: bit 0 net, bit 1 negative, bit 2 out of range, bit 3 motion, bit 4 kg (else lb),
  bit 5 always 1. Status word C bits 0-2: 0 lb/kg per word B, 1 g, 2 t; bit 5 always 1.
- **A&D** (`and_line`): A&D Company's standard data format (e.g. EK-L series instruction manual,
  9-2 "Data format"; FX-i/GX series "A&D standard format"): a two-letter header `ST` (stable),
  `US` (unstable), `OL` (out of range), `QT` (stable count), a comma, nine characters of data
  with sign and decimal point, three characters of unit, CR LF. Indicators (AD-4404 "A&D Data
  Format") add a second header `GS`/`NT`/`TR` (gross, net, tare). Command `Q` outputs at once.

`ScaleSim` serves one of them: polled (it answers the format's request command) or streaming
(a frame every `interval_s`). The test sets `weight`, `stable`, `tare`; `answer_delay_s` makes
it answer late, `silent` makes it say nothing. It counts what it answered and sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal

from firmware_bridge.errors import PortLostError
from firmware_bridge.port import PtyDevice

ScaleFormat = Literal["mt-sics", "toledo-continuous", "and"]
STX = 0x02
CR = 0x0D

_TOLEDO_SCALES = {0: 100.0, 1: 10.0, 2: 1.0, 3: 0.1, 4: 0.01, 5: 0.001, 6: 0.0001, 7: 0.00001}


def mt_sics_line(weight: float | None, *, stable: bool = True, unit: str = "kg") -> bytes:
    """An `SI` answer; `weight=None` is overload (`S +`)."""
    if weight is None:
        return b"S +\r\n"
    return f"S {'S' if stable else 'D'} {weight:10.2f} {unit}\r\n".encode("ascii")


def toledo_checksum(body: bytes) -> int:
    """The checksum byte of a Toledo continuous frame: `body` runs from STX to CR inclusive."""
    return (-sum(body)) & 0x7F


def toledo_frame(
    weight: float,
    *,
    tare: float = 0.0,
    stable: bool = True,
    decimals: int = 0,
    unit: Literal["kg", "lb", "g", "t"] = "kg",
    net: bool = False,
    out_of_range: bool = False,
    checksum: bool = True,
) -> bytes:
    """One standard continuous output frame (see the module docstring)."""
    code = 2 + decimals  # 2: no decimal point; 3..7: 1..5 decimals
    if not 2 <= code <= 7:
        raise ValueError("decimals must be 0..5")
    swa = 0x20 | (0b01 << 3) | code  # increment 1
    swb = 0x20 | (0x01 if net else 0) | (0x02 if weight < 0 else 0)
    swb |= (0x04 if out_of_range else 0) | (0 if stable else 0x08) | (0 if unit == "lb" else 0x10)
    swc = 0x20 | {"kg": 0, "lb": 0, "g": 1, "t": 2}[unit]
    factor = _TOLEDO_SCALES[code]
    shown = round(abs(weight) / factor)
    tare_digits = round(abs(tare) / factor)
    body = bytes([STX, swa, swb, swc]) + f"{shown:06d}{tare_digits:06d}".encode("ascii")
    body += bytes([CR])
    return body + (bytes([toledo_checksum(body)]) if checksum else b"")


def and_line(
    weight: float | None,
    *,
    stable: bool = True,
    unit: str = "kg",
    decimals: int = 1,
    mode: Literal["", "GS", "NT", "TR"] = "",
) -> bytes:
    """One line of the A&D standard format; `weight=None` is out of range (`OL`)."""
    if weight is None:
        header = "OL"
        data = "+" + "9" * (7 - decimals) + ("." + "9" * decimals if decimals else "9")
    else:
        header = "ST" if stable else "US"
        sign = "-" if weight < 0 else "+"
        digits = f"{abs(weight):0{8}.{decimals}f}" if decimals else f"{abs(weight):08.0f}"
        data = sign + digits
    second = f"{mode}," if mode else ""
    return f"{header},{second}{data}{unit:>3}\r\n".encode("ascii")


@dataclass
class ScaleSim:
    """A scale on `device` speaking `fmt`, polled or streaming (see the module docstring)."""

    device: PtyDevice
    fmt: ScaleFormat = "mt-sics"
    streaming: bool = False
    interval_s: float = 0.05
    weight: float | None = 0.0
    stable: bool = True
    tare: float = 0.0
    unit: str = "kg"
    decimals: int = 0
    answer_delay_s: float = 0.0
    silent: bool = False
    corrupt_checksum: bool = False  # Toledo: every frame's checksum off by one
    answered: int = 0
    sent: int = 0
    commands: list[bytes] = field(default_factory=list)

    def frame(self) -> bytes:
        if self.fmt == "mt-sics":
            return mt_sics_line(self.weight, stable=self.stable, unit=self.unit)
        if self.fmt == "and":
            return and_line(self.weight, stable=self.stable, unit=self.unit, decimals=self.decimals)
        unit: Literal["kg", "lb", "g", "t"] = "kg"
        if self.unit in ("lb", "g", "t"):
            unit = self.unit  # type: ignore[assignment]  # narrowed by the test above
        raw = toledo_frame(
            self.weight or 0.0,
            tare=self.tare,
            stable=self.stable,
            decimals=self.decimals,
            unit=unit,
            net=self.tare > 0,
            out_of_range=self.weight is None,
        )
        if self.corrupt_checksum:
            raw = raw[:-1] + bytes([(raw[-1] + 1) & 0x7F])
        return raw

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            streamer = tg.create_task(self._stream(), name="scale stream")
            await self._serve()
            streamer.cancel()

    async def _write(self, data: bytes) -> bool:
        try:
            await self.device.write(data)
        except PortLostError:
            return False
        self.sent += 1
        return True

    async def _stream(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.streaming and not self.silent and not await self._write(self.frame()):
                return

    async def _answer(self) -> None:
        if self.answer_delay_s:
            await asyncio.sleep(self.answer_delay_s)
        if await self._write(self.frame()):
            self.answered += 1

    async def _serve(self) -> None:
        buf = b""
        answers: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    buf += await self.device.read()
                except PortLostError:
                    return
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    self.commands.append(line)
                    if line in (b"SIR", b"PRINT ON"):
                        self.streaming = True
                    elif line in (b"SI", b"S", b"Q") and not self.silent:
                        task = asyncio.create_task(self._answer(), name="scale answer")
                        answers.add(task)
                        task.add_done_callback(answers.discard)
        finally:  # unplugged or stopped: answers still pending are lost
            for task in list(answers):
                task.cancel()
            for task in list(answers):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
