"""Real processes for the behaviour tests: the receiver (`edge-cloud serve`), the agent
(`edge-agent run`), a fault-injecting TCP proxy, and direct reads of the receiver's SQLite file.

Every process is started with `subprocess.Popen` and killed in a `finally`/fixture teardown, so
no test leaves one behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.journal import JOURNAL_SUFFIX, readings_after
from tests.agent.helpers import enrol_key, write_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHAOS_CYCLES = int(os.environ.get("TIERLESS_CHAOS_CYCLES", "8"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def receiver_available() -> bool:
    return (BIN / "edge-cloud").exists()


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait()


@dataclass
class Receiver:
    """`edge-cloud serve` on a SQLite file; restartable on the same port and file."""

    directory: Path
    db_url: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db_path = self.directory / "cloud.db"
        self.admin_file = self.directory / "admin.token"
        self.read_file = self.directory / "read.token"
        for f in (self.admin_file, self.read_file):
            f.write_text(secrets.token_urlsafe(32))
            f.chmod(0o600)
        self.admin_token = self.admin_file.read_text()
        self.url = f"http://127.0.0.1:{self.port}"
        self.public_url = self.url  # what gateways sign; a proxy in front changes it

    def start(self) -> None:
        db = self.db_url or f"sqlite:///{self.db_path}"
        self.log = open(self.directory / "receiver.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(BIN / "edge-cloud"),
                "serve",
                "--db",
                db,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--public-url",
                self.public_url,
                "--admin-token-file",
                str(self.admin_file),
                "--read-token-file",
                str(self.read_file),
                "--device-rate",
                "1000",
                "--device-burst",
                "1000",
                "--log-level",
                "warning",
            ],
            cwd=self.directory,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited: {self.log_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("receiver did not come up")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
        _kill(self.proc)
        self.proc = None
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            finally:
                _kill(self.proc)
        self.proc = None
        if hasattr(self, "log"):
            self.log.close()

    def log_text(self) -> str:
        return (self.directory / "receiver.log").read_text(errors="replace")[-3000:]

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read() or b"{}"))

    def enroll_device(self, device_id: str, key_file: Path) -> None:
        token = self.admin("POST", "/v1/admin/tokens", {"device_id": device_id, "ttl_s": 600})
        enrol_key(self.public_url, token["token"], device_id, key_file)

    # -- what the cloud holds (read from its SQLite file) ----------------------------------

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def readings(self, device_id: str) -> dict[str, list[tuple[int, float, int]]]:
        """(ts, value, quality) per metric, ordered by timestamp (ties, which a source that
        catches up after a stall can make, by value)."""
        out: dict[str, list[tuple[int, float, int]]] = {}
        for metric, ts, value, quality in self.query(
            "SELECT s.metric, r.ts_ms, r.value, r.quality FROM reading r "
            "JOIN series s ON s.id = r.series_id WHERE s.device_id = ? "
            "ORDER BY s.metric, r.ts_ms, r.value",
            (device_id,),
        ):
            out.setdefault(metric, []).append((ts, value, quality))
        return out

    def device(self, device_id: str) -> dict[str, Any]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM device WHERE id = ?", (device_id,)).fetchone()
        finally:
            conn.close()
        return dict(row) if row else {}


@dataclass
class AgentProc:
    """`edge-agent run` as a real process."""

    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = open(self.config.parent / "agent.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
        _kill(self.proc)
        self.proc = None
        self.log.close()

    def wait_running(self, timeout: float = 60) -> None:
        """Until this run has committed readings: its signal handlers are in place (they are
        installed before anything else is built) and its sources run. On a loaded machine the
        interpreter alone can take over a second to import the agent, and a SIGTERM before that
        ends the process by the signal, so no fixed sleep is long enough."""
        before = self.committed()
        proc = self.proc
        assert proc is not None, "not started"

        def committed_more() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"agent exited with {proc.returncode}\n{self.log_text()}")
            return self.committed() > before

        wait_until(committed_more, timeout, "the agent to commit readings", self.log_text)

    def stop(self) -> int:
        code = -1
        if self.proc is not None:
            self.proc.terminate()
            try:
                # generous: a clean stop takes milliseconds, but not on an oversubscribed machine
                code = self.proc.wait(timeout=60)
            finally:
                _kill(self.proc)
            self.proc = None
            self.log.close()
        return code

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "agent.cli", "status", "--config", str(self.config), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return dict(json.loads(out.stdout)) if out.returncode == 0 else {}

    def committed(self) -> int:
        """The buffer's total of committed readings over every run (what `status` shows as
        readings_committed), read from the file directly: polling `status` would start an
        interpreter per poll, which on a loaded machine takes longer than the wait itself."""
        path = self.config.parent / tomllib.loads(self.config.read_text())["buffer"]["path"]
        if not path.exists():
            return 0
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            rows = dict(
                conn.execute(
                    "SELECT key, value FROM meta "
                    "WHERE key IN ('total_committed', 'journal_merged_seq')"
                ).fetchall()
            )
        except sqlite3.OperationalError:  # the agent has not created its tables yet
            return 0
        finally:
            conn.close()
        # plus what the append journal holds, not yet merged into the tables
        merged = int(rows.get("journal_merged_seq", 0))
        journaled = readings_after(Path(f"{path}{JOURNAL_SUFFIX}"), merged)
        return int(rows.get("total_committed", 0)) + journaled

    def log_text(self) -> str:
        return (self.config.parent / "agent.log").read_text(errors="replace")[-3000:]


def make_agent(
    directory: Path,
    url: str,
    receiver: Receiver,
    agents: list[AgentProc],
    *,
    device_id: str = "gw-e2e",
    enrol: bool = True,
    **config,
) -> AgentProc:
    directory.mkdir(parents=True, exist_ok=True)
    if enrol:
        receiver.enroll_device(device_id, directory / "keys" / "device.key")
    path = write_config(directory, url=url, device_id=device_id, **config)
    agent = AgentProc(path)
    agents.append(agent)
    return agent


def wait_until(condition, timeout: float, what: str, *logs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    detail = "\n".join(log() for log in logs)
    raise AssertionError(f"timed out waiting for {what}\n{detail}")


def assert_contiguous_once(
    per_series: dict[str, list[tuple[int, float, int]]], *, series: int
) -> dict[str, int]:
    """Each series holds 1, 2, ..., n exactly once, and sorting by timestamp sorts the values
    (so the timestamps are in the order the readings were made); returns n per series."""
    assert len(per_series) == series, sorted(per_series)
    tops = {}
    for metric, rows in per_series.items():
        values = [v for _ts, v, _q in rows]
        n = len(values)
        missing = sorted(set(range(1, int(max(values)) + 1)) - {int(v) for v in values})
        assert values == [float(i) for i in range(1, n + 1)], (
            f"{metric}: not 1..{n} once each in time order; "
            f"dupes={n - len(set(values))}, missing={missing[:10]}"
        )
        tops[metric] = n
    return tops
