"""A dirty serial line: a relay between a device's pty and the gateway that damages the bytes.

    device pty (its symlink) ◀──▶ relay ◀──▶ a pty of our own, published at `link` ◀──▶ gateway

Per chunk, in each direction (or only towards the gateway: `to_device=False`), with the
probabilities of `Dirt`: flip one bit, insert a control byte (NUL, ETX, CR, LF, DEL, 0xFF), or
drop the rest of the chunk (a truncated frame). What is done is counted in `counts`, and so is
what the gateway was sent damaged (`damaged_chunks_to_gateway`, and the lines those chunks held:
`damaged_lines_to_gateway`, and the next lines they were joined to by a lost line end:
`joined_lines_to_gateway`), which bounds what a protocol without retransmission may lose.
The damage is drawn from a seeded `random.Random`, so a soak run can be replayed.

A protocol with checksums and retransmission (our MCU framing) must deliver every reading exactly
once through this; one without (Modbus answers, ASCII lines) loses what was damaged, and the
gateway must count it and carry on. Runs its own event loop in a thread; `close()` unplugs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import tty
from dataclasses import dataclass

from firmware_bridge.errors import PortError
from firmware_bridge.port import PtyDevice

CONTROL_BYTES = b"\x00\x03\r\n\x7f\xff"


@dataclass(frozen=True, slots=True)
class Dirt:
    """Chances per chunk (a read of up to 256 bytes) of each kind of damage."""

    flip: float = 0.01
    control: float = 0.01
    truncate: float = 0.005
    # This chunk towards the gateway (counted from 1) gets a bit flipped whatever the chances
    # say, so that even a short run shows the gateway recovering from a damaged frame. 0: none.
    sure: int = 0


def damage(chunk: bytes, dirt: Dirt, rng: random.Random, counts: dict[str, int]) -> bytes:
    """The chunk as the dirty line delivers it. Pure but for `rng` and `counts`."""
    out = bytearray(chunk)
    if out and rng.random() < dirt.flip:
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
        counts["flips"] += 1
    if rng.random() < dirt.control:
        out.insert(rng.randrange(len(out) + 1), rng.choice(CONTROL_BYTES))
        counts["controls"] += 1
    if out and rng.random() < dirt.truncate:
        cut = rng.randrange(len(out))
        counts["truncated_bytes"] += len(out) - cut
        del out[cut:]
    return bytes(out)


class NoisyLine:
    """Relays `device` (a pty symlink a device emulator publishes) to a new pty at `link`."""

    def __init__(
        self, device: str, link: str, *, dirt: Dirt, seed: int, to_device: bool = True
    ) -> None:
        self.device, self.link, self.dirt = device, link, dirt
        self.to_device = to_device
        self.rng = random.Random(seed)
        self.counts = {
            "bytes": 0,
            "flips": 0,
            "controls": 0,
            "truncated_bytes": 0,
            "damaged_chunks_to_gateway": 0,
            "damaged_lines_to_gateway": 0,
            "joined_lines_to_gateway": 0,
        }
        self.damaging = True
        self._to_gateway = 0  # chunks relayed towards the gateway
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"noise {link}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"noisy line {self.link} did not start")

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        ours = PtyDevice(self.link)
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
                except OSError:
                    await asyncio.sleep(0.1)  # the device is not (yet) there
                    continue
                try:
                    tty.setraw(fd)
                    await self._relay(fd, ours)
                finally:
                    os.close(fd)
        finally:
            ours.close()

    async def _relay(self, fd: int, ours: PtyDevice) -> None:
        loop = asyncio.get_running_loop()
        from_device: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(fd, 256)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            from_device.put_nowait(data)

        loop.add_reader(fd, readable)

        async def device_to_gateway() -> None:
            while data := await from_device.get():
                self._to_gateway += 1
                if self.damaging and self._to_gateway == self.dirt.sure:
                    damaged = damage(data, Dirt(flip=1.0), self.rng, self.counts)
                    self.counts["bytes"] += len(data)
                else:
                    damaged = self._maybe_damage(data)
                if damaged != data:
                    self.counts["damaged_chunks_to_gateway"] += 1
                    self.counts["damaged_lines_to_gateway"] += max(1, data.count(b"\n"))
                    # a line end lost joins its line to the next one, which is lost with it
                    lost_ends = data.count(b"\n") - damaged.count(b"\n")
                    self.counts["joined_lines_to_gateway"] += max(0, lost_ends)
                await ours.write(damaged)

        async def gateway_to_device() -> None:
            while True:
                data = await ours.read(256)
                if self.to_device:
                    data = self._maybe_damage(data)
                view = memoryview(data)
                while view:
                    try:
                        view = view[os.write(fd, view) :]
                    except BlockingIOError:
                        await asyncio.sleep(0.001)

        tasks = [
            asyncio.create_task(device_to_gateway()),
            asyncio.create_task(gateway_to_device()),
            asyncio.create_task(self._stop.wait() if self._stop else asyncio.sleep(0)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, PortError, OSError):
                    await t

    def _maybe_damage(self, data: bytes) -> bytes:
        self.counts["bytes"] += len(data)
        return damage(data, self.dirt, self.rng, self.counts) if self.damaging else data
