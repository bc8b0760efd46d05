"""A firmware emulator: our MCU protocol, spoken from the device side, for tests and the demo.

    python -m firmware_bridge.sim.emulator --link /tmp/ttyMCU --state /tmp/mcu.flash --rate-hz 10

creates a pseudo-terminal, publishes its slave at `--link` (point the bridge's `port.path` there)
and behaves like our firmware: it takes readings at a fixed rate on a few channels, keeps every
reading in a "flash" file until the bridge acknowledges it, counts boots in that file, and
replays what is unacknowledged after every HELLO. Killing it (even with SIGKILL) and starting it
again with the same `--state` is a power cycle: the boot counter goes up, nothing is lost.
`--port /dev/ttyUSB0` speaks over a real serial port instead (e.g. a USB-serial loopback).

The firmware's rules, as the C implementation must keep them (docs/firmware-protocol.md):
- at boot, send ERROR HANDSHAKE_REQUIRED once; answer any frame but HELLO with it until HELLO;
- on HELLO: answer HELLO_ACK naming the oldest unacknowledged reading (or the next to be taken),
  send CHANNEL_INFO per channel, then send readings oldest first, at most `window` unacked;
- on ACK (b, s): delete every reading at or before (b, s); on RESEND (b, s): send again starting
  with (b, s); if (b, s) was acknowledged and deleted, from the oldest reading held; if it was
  never taken, answer ERROR BAD_POSITION;
- flag END_OF_BOOT on the last held reading of an earlier boot;
- stamp readings in UTC (TS_UTC) once HELLO or TIME_SYNC gave the time, else in ms since boot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import wire.version
from firmware_bridge.errors import PortError, RemoteProtocolError
from firmware_bridge.mcu_connection import NEED_DATA, Connection, Damaged, Role
from firmware_bridge.mcu_frames import (
    CLOCK_UNTRUSTED,
    END_OF_BOOT,
    PROTOCOL_VERSION,
    TS_UNTRUSTED,
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
)
from firmware_bridge.port import PtyDevice, SerialPort
from firmware_bridge.port_config import PortConfig

log = logging.getLogger(__name__)

ValueMode = Literal["meter", "position"]


class ByteLink(Protocol):
    async def read(self, max_bytes: int = 4096) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Record:
    boot: int
    seq: int
    channel: int
    ts_ms: int
    flags: int
    value: float

    @property
    def position(self) -> tuple[int, int]:
        return (self.boot, self.seq)


class FlashLog:
    """Unacknowledged readings and the boot counter, in one append-only JSON-lines file.

    Opening it is a boot: the counter goes up and is written before anything else. Every line is
    flushed to the OS as it is written, so a killed process loses nothing.
    """

    def __init__(self, path: str | Path, *, uid: int | None = None) -> None:
        self.path = Path(path)
        self.uid = uid if uid is not None else random.getrandbits(63)
        self.boot = 0
        self.records: list[Record] = []
        self.acked: tuple[int, int] | None = None
        self._dead = 0
        if self.path.exists():
            self._load()
        self.boot += 1
        self.next_seq = 0
        self._rewrite()

    def _load(self) -> None:
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a torn last line: the write never completed
            if "uid" in item:
                self.uid = int(item["uid"])
                self.boot = int(item["boot"])
            elif "r" in item:
                self.records.append(Record(*item["r"]))
            elif "a" in item:
                self._drop_through((int(item["a"][0]), int(item["a"][1])))

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"uid": self.uid, "boot": self.boot}) + "\n")
            for r in self.records:
                f.write(self._line(r))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the log
        self._dead = 0

    @staticmethod
    def _line(r: Record) -> str:
        return json.dumps({"r": [r.boot, r.seq, r.channel, r.ts_ms, r.flags, r.value]}) + "\n"

    def append(self, channel: int, ts_ms: int, flags: int, value: float) -> Record:
        rec = Record(self.boot, self.next_seq, channel, ts_ms, flags, value)
        self.next_seq += 1
        self.records.append(rec)
        self._file.write(self._line(rec))
        self._file.flush()
        return rec

    def ack(self, position: tuple[int, int]) -> int:
        """Delete every record at or before `position`; how many went."""
        dropped = self._drop_through(position)
        if dropped:
            self._file.write(json.dumps({"a": list(position)}) + "\n")
            self._file.flush()
            self._dead += dropped
            if self._dead > 4096 and self._dead > len(self.records):
                self._file.close()
                self._rewrite()
        return dropped

    def _drop_through(self, position: tuple[int, int]) -> int:
        n = 0
        while n < len(self.records) and self.records[n].position <= position:
            n += 1
        del self.records[:n]
        if n:
            self.acked = position
        return n

    def close(self) -> None:
        self._file.close()


class Emulator:
    """The firmware's behaviour over one link. `run()` until cancelled."""

    def __init__(
        self,
        link: ByteLink,
        flash: FlashLog,
        *,
        channels: int = 2,
        rate_hz: float = 10.0,
        max_readings: int = 0,
        value_mode: ValueMode = "meter",
        firmware: str = "tierless-emulator/1",
        window_cap: int = 1024,
        corrupt_every: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.link = link
        self.flash = flash
        self.channels = channels
        self.rate_hz = rate_hz
        self.max_readings = max_readings
        self.value_mode = value_mode
        self.firmware = firmware
        self.window_cap = window_cap
        self.corrupt_every = corrupt_every
        self._rng = rng or random.Random()  # noqa: S311 - fault injection, not crypto
        self._conn = Connection(Role.MCU)
        self._start = time.monotonic()
        self._handshaken = False
        self._window = 0
        self._next = 0  # index into flash.records of the next reading to send
        self._utc_offset: int | None = None
        self._utc_untrusted = False
        self._sent = 0
        self.produced = 0
        self.frames_sent = 0

    def mcu_ms(self) -> int:
        return int((time.monotonic() - self._start) * 1000)

    async def run(self) -> None:
        await self._send(ErrorFrame(ErrorCode.HANDSHAKE_REQUIRED, 0, "boot"))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._reader(), name="emulator reader")
            if self.rate_hz > 0:
                tg.create_task(self._producer(), name="emulator producer")

    async def _send(self, msg: Message) -> None:
        data = self._conn.send(msg)
        self.frames_sent += 1
        if self.corrupt_every and self.frames_sent % self.corrupt_every == 0:
            i = self._rng.randrange(2, len(data) - 1)  # keep the delimiters
            data = data[:i] + bytes([data[i] ^ 0x5A or 0x01]) + data[i + 1 :]
        await self.link.write(data)

    async def _producer(self) -> None:
        period = 1.0 / self.rate_hz
        next_at = time.monotonic()
        while not self.max_readings or self.produced < self.max_readings:
            for channel in range(self.channels):
                if self.max_readings and self.produced >= self.max_readings:
                    break
                self._take(channel)
            await self._pump()
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def _take(self, channel: int) -> Record:
        if self._utc_offset is not None:
            ts = self.mcu_ms() + self._utc_offset
            flags = TS_UTC | (TS_UNTRUSTED if self._utc_untrusted else 0)
        else:
            ts, flags = self.mcu_ms(), 0
        seq = self.flash.next_seq
        if self.value_mode == "position":
            value = float(self.flash.boot * 1_000_000 + seq)
        else:
            value = round(1000.0 + channel * 100.0 + seq * 0.25, 2)
        self.produced += 1
        return self.flash.append(channel, ts, flags, value)

    async def _pump(self) -> None:
        records = self.flash.records
        while self._handshaken and self._next < len(records) and self._next < self._window:
            rec = records[self._next]
            flags = rec.flags
            if rec.boot < self.flash.boot and (
                self._next + 1 == len(records) or records[self._next + 1].boot != rec.boot
            ):
                flags |= END_OF_BOOT
            self._next += 1
            await self._send(self._frame(rec, flags))
            self._sent += 1

    def _frame(self, rec: Record, flags: int) -> ReadingFrame:
        if self.value_mode == "position" or rec.channel % 3 == 0:
            vtype, raw, exp = ValueType.F64, rec.value, 0
        elif rec.channel % 3 == 1:
            vtype, raw, exp = ValueType.F32, rec.value, 0
        else:
            vtype, raw, exp = ValueType.I32_SCALED, round(rec.value * 100), -2
        return ReadingFrame(rec.boot, rec.seq, rec.channel, flags, 0, rec.ts_ms, vtype, raw, exp)

    async def _reader(self) -> None:
        while True:
            data = await self.link.read()
            try:
                self._conn.receive_data(data)
            except RemoteProtocolError as exc:
                log.warning("emulator: bridge broke the protocol: %s", exc)
                continue
            while (event := self._conn.next_event()) is not NEED_DATA:
                if isinstance(event, Damaged):
                    await self._send(ErrorFrame(ErrorCode.BAD_FRAME, 0, event.reason[:40]))
                elif isinstance(event, Hello | Ack | Resend | TimeSync | ErrorFrame):
                    await self._on_message(event)
            await self._pump()

    async def _on_message(self, msg: Hello | Ack | Resend | TimeSync | ErrorFrame) -> None:
        if isinstance(msg, Hello):
            await self._on_hello(msg)
            return
        if isinstance(msg, ErrorFrame):
            return
        if not self._handshaken:
            await self._send(ErrorFrame(ErrorCode.HANDSHAKE_REQUIRED, 0, "say HELLO"))
            return
        if isinstance(msg, Ack):
            dropped = self.flash.ack((msg.boot, msg.seq))
            self._next = max(0, self._next - dropped)
        elif isinstance(msg, Resend):
            pos = (msg.boot, msg.seq)
            for i, rec in enumerate(self.flash.records):
                if rec.position == pos:
                    self._next = i
                    break
            else:
                if self.flash.acked is not None and pos <= self.flash.acked:
                    self._next = 0  # already deleted: everything held comes after it
                else:
                    await self._send(ErrorFrame(ErrorCode.BAD_POSITION, 0, "not held"))
        else:
            self._set_time(msg.utc_ms, msg.flags)
            await self._send(TimeSyncAck(msg.utc_ms, self.mcu_ms()))

    async def _on_hello(self, hello: Hello) -> None:
        if hello.version < PROTOCOL_VERSION:
            await self._send(ErrorFrame(ErrorCode.UNSUPPORTED_VERSION, PROTOCOL_VERSION, ""))
            return
        self._set_time(hello.utc_ms, hello.flags)
        records = self.flash.records
        first = records[0].position if records else (self.flash.boot, self.flash.next_seq)
        await self._send(
            HelloAck(
                PROTOCOL_VERSION,
                self.flash.boot,
                self.flash.uid,
                self.mcu_ms(),
                first[0],
                first[1],
                self.channels,
                self.firmware,
            )
        )
        for channel in range(self.channels):
            await self._send(ChannelInfo(channel, f"emulated_ch{channel}", "kWh"))
        self._handshaken = True
        self._window = min(hello.window, self.window_cap)
        self._next = 0

    def _set_time(self, utc_ms: int, flags: int) -> None:
        self._utc_offset = utc_ms - self.mcu_ms()
        self._utc_untrusted = bool(flags & CLOCK_UNTRUSTED)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m firmware_bridge.sim.emulator",
        description="Emulate Tierless MCU firmware on a pseudo-terminal or serial port.",
    )
    p.add_argument("--version", action=wire.version.VersionAction, prog="tierless-mcu-emulator")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--link", help="create a pty and publish its slave at this path")
    where.add_argument("--port", help="use this existing serial port instead")
    p.add_argument("--baudrate", type=int, default=115200)
    p.add_argument("--state", required=True, help="the flash file (created if missing)")
    p.add_argument("--uid", type=lambda s: int(s, 0), default=None, help="MCU uid for a new state")
    p.add_argument("--rate-hz", type=float, default=10.0, help="reading rounds per second")
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--max-readings", type=int, default=0, help="stop producing after N (0: never)")
    p.add_argument("--value-mode", choices=("meter", "position"), default="meter")
    p.add_argument("--corrupt-every", type=int, default=0, help="damage every Nth frame sent")
    return p.parse_args(argv)


async def _amain(args: argparse.Namespace) -> int:
    link: ByteLink
    try:
        if args.link:
            pty = PtyDevice(args.link)
            print(f"emulator: {args.link} -> {pty.slave_path}", flush=True)
            link = pty
        else:
            link = SerialPort.open(PortConfig(path=args.port, baudrate=args.baudrate))
    except (PortError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 1
    flash = FlashLog(args.state, uid=args.uid)
    emu = Emulator(
        link,
        flash,
        channels=args.channels,
        rate_hz=args.rate_hz,
        max_readings=args.max_readings,
        value_mode=args.value_mode,
        corrupt_every=args.corrupt_every,
    )
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if task is not None:
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await _serve(emu)
    finally:
        with contextlib.suppress(OSError):
            link.close()
        flash.close()


async def _serve(emu: Emulator) -> int:
    status = 0
    try:
        await emu.run()
    except* PortError as group:
        print(f"emulator: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    except* asyncio.CancelledError:
        pass
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.channels < 1 or args.rate_hz < 0:
        print("emulator: --channels must be >= 1 and --rate-hz >= 0", file=sys.stderr)
        return 2
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
