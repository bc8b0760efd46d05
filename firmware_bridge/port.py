"""Serial ports and pseudo-terminals: the only module of firmware_bridge that opens a tty.

`SerialPort` is one open port, owned by one source:
- opened by path, symlinks followed, so stable `/dev/serial/by-id/...` names work and survive
  an adapter moving from ttyUSB0 to ttyUSB1 on replug (the path is resolved again at every open);
- exclusive: `flock(LOCK_EX|LOCK_NB)` on the open file (the lock pyserial's `exclusive=True` and
  so pymodbus take too, so Modbus and our own sources exclude each other) plus TIOCEXCL, which
  also keeps out programs that do not use flock (root can still open a TIOCEXCL tty);
- configured raw (no echo, no line editing) at the configured speed and framing, with stale input
  flushed on open;
- read and written without blocking the event loop; a port that vanishes (EIO, ENODEV, EOF, or the
  path now naming another device) raises PortLostError, and the caller reopens with backoff.
Errors from the OS and pyserial are translated here and go no further.

`PtyDevice` is the *device* end of a pseudo-terminal published at a path (a symlink to the slave),
the way a USB adapter appears: the firmware emulator and the test peers use it. Closing it is an
unplug (the other end reads EIO); a new `PtyDevice` at the same path is the replug.
`NullModem` joins two `PtyDevice`s, so two programs that both insist on opening a path (pymodbus'
server and client) can talk; its `cut()` / `splice()` unplug and replug one side.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import termios
import tty
from dataclasses import dataclass
from typing import Literal

import serial  # type: ignore[import-untyped]  # no stubs shipped; see docs/serial.md

from firmware_bridge.errors import (
    PortAccessError,
    PortBusyError,
    PortLostError,
    PortUnavailableError,
)
from firmware_bridge.port_config import PortConfig

_LOST_ERRNOS = frozenset({errno.EIO, errno.ENODEV, errno.ENXIO, errno.EBADF, errno.EPIPE})
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO, errno.ENOTDIR})


@dataclass(slots=True)
class PortStats:
    """Health of one port across reopenings; exported by the agent as metrics."""

    opens: int = 0
    open_failures: int = 0
    busy: int = 0
    lost: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class SerialPort:
    """One open, exclusively owned serial port. Build it with `SerialPort.open`."""

    def __init__(self, config: PortConfig, handle: serial.Serial, stats: PortStats) -> None:
        self.config = config
        self._serial = handle
        self._fd: int = handle.fileno()
        self._rdev = os.fstat(self._fd).st_rdev
        self.stats = stats
        self.resolved = os.path.realpath(config.path)
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def open(cls, config: PortConfig, stats: PortStats | None = None) -> SerialPort:
        """Open and lock `config.path`; PortUnavailable/Busy/AccessError say why not."""
        stats = stats if stats is not None else PortStats()
        try:
            handle = serial.Serial(
                port=config.path,
                baudrate=config.baudrate,
                bytesize=config.bytesize,
                parity=config.parity,
                stopbits=config.stopbits,
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            stats.open_failures += 1
            raise _open_error(config.path, exc) from exc
        try:
            fd = handle.fileno()
            with contextlib.suppress(OSError):  # not every tty driver knows TIOCEXCL
                fcntl.ioctl(fd, termios.TIOCEXCL)
            os.set_blocking(fd, False)
            # pyserial leaves VMIN=0, where an empty read returns b"" instead of EAGAIN; with
            # VMIN=1 an empty read is EAGAIN, and b"" means the line hung up.
            attrs = termios.tcgetattr(fd)
            attrs[6][termios.VMIN] = 1
            attrs[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            termios.tcflush(fd, termios.TCIFLUSH)
        except (OSError, termios.error) as exc:
            handle.close()
            stats.open_failures += 1
            raise PortUnavailableError(f"{config.path}: cannot set up: {exc}") from exc
        stats.opens += 1
        return cls(config, handle, stats)

    @property
    def closed(self) -> bool:
        return self._closed

    def still_present(self) -> bool:
        """Whether the path still names the device we hold open (False after a replug)."""
        try:
            return os.stat(self.config.path).st_rdev == self._rdev
        except OSError:
            return False

    async def read(self, max_bytes: int = 4096) -> bytes:
        """At least one byte; waits for it. PortLostError if the device went away."""
        while True:
            if self._closed:
                raise PortLostError(f"{self.config.path}: closed")
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await _wait_fd(self._fd, writable=False)
                continue
            except OSError as exc:
                self.stats.lost += 1
                raise PortLostError(f"{self.config.path}: read failed: {exc.strerror}") from exc
            if not data:
                self.stats.lost += 1
                raise PortLostError(f"{self.config.path}: end of file (device gone)")
            self.stats.bytes_in += len(data)
            return data

    async def write(self, data: bytes) -> None:
        """All of `data`, in order with other writers' whole writes."""
        async with self._write_lock:
            view = memoryview(data)
            while view:
                if self._closed:
                    raise PortLostError(f"{self.config.path}: closed")
                try:
                    n = os.write(self._fd, view)
                except BlockingIOError:
                    await _wait_fd(self._fd, writable=True)
                    continue
                except OSError as exc:
                    self.stats.lost += 1
                    raise PortLostError(
                        f"{self.config.path}: write failed: {exc.strerror}"
                    ) from exc
                self.stats.bytes_out += n
                view = view[n:]

    def discard_input(self) -> None:
        """Drop whatever the driver has buffered (stale answers before a new request)."""
        try:
            termios.tcflush(self._fd, termios.TCIFLUSH)
        except (OSError, termios.error) as exc:
            self.stats.lost += 1
            raise PortLostError(f"{self.config.path}: flush failed: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, termios.error):
            fcntl.ioctl(self._fd, termios.TIOCNXCL)
        with contextlib.suppress(OSError, serial.SerialException):
            self._serial.close()


def device_present(path: str) -> bool:
    """Whether `path` names something now (a stat, no open: cheap to ask while waiting for a
    replug)."""
    return os.path.exists(path)


def _open_error(path: str, exc: BaseException) -> Exception:
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EBUSY) or "exclusively lock" in text:
        return PortBusyError(f"{path}: already owned by another process or source")
    if code in (errno.EACCES, errno.EPERM):
        return PortAccessError(f"{path}: permission denied (is this user in group dialout?)")
    if code in _MISSING_ERRNOS or code is None:
        return PortUnavailableError(f"{path}: not available: {text}")
    return PortUnavailableError(f"{path}: cannot open: {text}")


async def _wait_fd(fd: int, *, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class PtyDevice:
    """The device end of a pseudo-terminal, its slave published as a symlink at `link`."""

    def __init__(self, link: str) -> None:
        self.link = link
        master, slave = os.openpty()
        # Raw before anyone writes: a fresh pty echoes and edits lines, which would mangle frames.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master = master
        # Held open so the master never reads EIO between two openers of the slave.
        self._slave = slave
        self.slave_path = os.ttyname(slave)
        tmp = f"{link}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.slave_path, tmp)
        os.replace(tmp, link)  # atomic: the path always names one device or none
        self._closed = False
        self.bytes_in = 0

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self, max_bytes: int = 4096) -> bytes:
        while True:
            if self._closed:
                raise PortLostError(f"{self.link}: closed")
            try:
                data = os.read(self._master, max_bytes)
            except BlockingIOError:
                await _wait_fd(self._master, writable=False)
                continue
            except OSError as exc:
                raise PortLostError(f"{self.link}: read failed: {exc.strerror}") from exc
            if not data:
                raise PortLostError(f"{self.link}: end of file")
            self.bytes_in += len(data)
            return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._closed:
                raise PortLostError(f"{self.link}: closed")
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                await _wait_fd(self._master, writable=True)
                continue
            except OSError as exc:
                raise PortLostError(f"{self.link}: write failed: {exc.strerror}") from exc
            view = view[n:]

    def close(self, *, unlink: bool = True) -> None:
        """Unplug: the opener of the slave reads EIO; the path disappears unless `unlink=False`."""
        if self._closed:
            return
        self._closed = True
        if unlink:
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.slave_path:
                    os.unlink(self.link)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class NullModem:
    """Two published ptys with every byte written to one read from the other."""

    def __init__(self, link_a: str, link_b: str) -> None:
        self.link_a = link_a
        self.link_b = link_b
        self.a = PtyDevice(link_a)
        self.b = PtyDevice(link_b)
        self._tasks: list[asyncio.Task[None]] = []
        self.bytes_relayed = 0

    async def __aenter__(self) -> NullModem:
        self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._pump(self.a, self.b), name=f"nullmodem {self.link_a}>"),
            asyncio.create_task(self._pump(self.b, self.a), name=f"nullmodem {self.link_b}>"),
        ]

    async def _pump(self, src: PtyDevice, dst: PtyDevice) -> None:
        while True:
            try:
                data = await src.read()
            except PortLostError:
                return
            self.bytes_relayed += len(data)
            with contextlib.suppress(PortLostError):
                await dst.write(data)

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def cut(self, side: Literal["a", "b"] = "b") -> None:
        """Unplug one side: its opener reads EIO and its path disappears."""
        await self._stop()
        (self.a if side == "a" else self.b).close()

    async def splice(self, side: Literal["a", "b"] = "b") -> None:
        """Replug a cut side: a new pty at the same path."""
        if side == "a":
            self.a = PtyDevice(self.link_a)
        else:
            self.b = PtyDevice(self.link_b)
        self._start()

    async def close(self) -> None:
        await self._stop()
        self.a.close()
        self.b.close()
