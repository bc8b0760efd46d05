"""The demo's child processes.

Each child runs in a process group of its own, so a Ctrl-C at the terminal reaches only the
demo, which stops the children itself, in order; and each is asked by the kernel to die with the
demo (`PR_SET_PDEATHSIG`, SIGTERM), so even a demo killed with SIGKILL leaves no process behind.
A child's stdout and stderr go to a log file in the run directory. `Interrupts` counts the
demo's own SIGINT/SIGTERM, which the demo polls between steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from demo.errors import DemoError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One long-running child process."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | Path],
        log: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            try:
                self.proc = subprocess.Popen(  # noqa: S603 - our own binaries, no shell
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=self.env,
                    process_group=0,
                    preexec_fn=_die_with_parent,  # safe here: the demo starts no threads
                )
            except OSError as exc:
                raise DemoError(
                    f"cannot start {self.name} ({self.argv[0]}): {exc.strerror}"
                ) from exc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.running() and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, *, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask the child to stop, wait; kill its process group if it does not. Its exit code
        (None if it was never started)."""
        if self.proc is None:
            return None
        self.send(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def run_once(
    argv: Sequence[str | Path], *, timeout_s: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A short command (edgectl, edge-agent status), in its own process group, output captured."""
    args = [str(a) for a in argv]
    try:
        return subprocess.run(  # noqa: S603 - our own binaries, no shell
            args,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"{Path(args[0]).name} did not finish within {timeout_s:.0f} s") from exc
    except OSError as exc:
        raise DemoError(f"cannot run {args[0]}: {exc.strerror}") from exc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise DemoError(
                f"port {port} on 127.0.0.1 is in use ({exc.strerror}); pick another "
                "(make demo DEMO_PORT=N, python -m demo --port N) or leave it out for a free one"
            ) from exc


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    child: Child | None = None,
    interrupted: Callable[[], bool] = lambda: False,
) -> None:
    """Poll `ready` until true; DemoError if `child` exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if child is not None and not child.running():
            raise DemoError(
                f"{child.name} exited while waiting for {what} (log {child.log}):\n"
                + child.log_tail()
            )
        if interrupted():
            raise KeyboardInterrupt
        if time.monotonic() > deadline:
            tail = f" (log {child.log}):\n{child.log_tail()}" if child is not None else ""
            raise DemoError(f"gave up waiting for {what} after {timeout_s:.0f} s{tail}")
        time.sleep(0.05)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback http
            return bool(response.status == 200)
    except OSError:
        return False


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Interrupts:
    """Counts SIGINT/SIGTERM; the demo polls it (handlers never raise into the middle of work)."""

    def __init__(self) -> None:
        self.count = 0
        self.term = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only flags here: printing from a handler can collide with the print it interrupted.
        self.count += 1
        self.term = self.term or signum == signal.SIGTERM

    @property
    def hurry(self) -> bool:
        """Stop now, without waiting for the drain."""
        return self.count > 1 or self.term
