"""Fixtures for edgectl's tests: a real `edge-cloud serve` process per module, and a way to run
edgectl in this process with its own environment, stdin and clock.

edgectl is a synchronous program, so its tests are synchronous too, and the receiver runs as a
separate process (`python -m cloud serve`, like `tests.cloud.helpers.spawn_receiver`, but
synchronous and shared by the tests of one module: each test uses its own device ids).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provisioning.cli import Io, run
from tests.cloud.helpers import free_port

BIN = Path(sys.executable).parent


@dataclass
class RealReceiver:
    """`edge-cloud serve` on a SQLite file in `directory`, plain HTTP or TLS on loopback."""

    directory: Path
    tls: tuple[Path, Path] | None = None  # certificate chain, key
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db_path = self.directory / "cloud.db"
        self.admin_file = self.directory / "admin.token"
        self.admin_token = secrets.token_urlsafe(32)
        self.admin_file.write_text(self.admin_token + "\n")
        self.admin_file.chmod(0o600)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [str(BIN / "edge-cloud"), "serve", "--db", f"sqlite:///{self.db_path}"]
        args += ["--port", str(self.port), "--public-url", self.url]
        args += ["--admin-token-file", str(self.admin_file), "--log-level", "warning"]
        args += ["--enroll-rate", "100000", "--enroll-burst", "100000"]
        args += ["--device-rate", "1000", "--device-burst", "1000"]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        self.log = open(self.directory / "receiver.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, cwd=self.directory, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited: {self.log_text()}")
            if "listening on" in self.log_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"receiver did not come up: {self.log_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if hasattr(self, "log"):
            self.log.close()

    def log_text(self) -> str:
        return (self.directory / "receiver.log").read_text(errors="replace")[-3000:]

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert not self.tls, "use edgectl for a TLS receiver"
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
            return json.loads(response.read() or b"{}")

    def token(self, device_id: str, ttl_s: int = 600) -> str:
        return str(
            self.admin("POST", "/v1/admin/tokens", {"device_id": device_id, "ttl_s": ttl_s})[
                "token"
            ]
        )

    def device(self, device_id: str) -> dict[str, Any]:
        return dict(self.admin("GET", f"/v1/admin/devices/{quote(device_id, safe='/')}"))

    def keys(self, device_id: str) -> dict[str, str]:
        """keyid -> status"""
        return {k["keyid"]: k["status"] for k in self.device(device_id)["keys"]}

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealReceiver]:
    r = RealReceiver(tmp_path_factory.mktemp("receiver"))
    r.start()
    try:
        yield r
    finally:
        r.stop()


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Edgectl:
    """Runs `edgectl` in this process: `ctl("devices", "list")`."""

    env: dict[str, str]

    def __call__(
        self,
        *argv: str | Path,
        stdin: str = "",
        env: dict[str, str] | None = None,
        now_ms: int | None = None,
    ) -> Result:
        out, err = io.StringIO(), io.StringIO()
        clock = (lambda: now_ms) if now_ms is not None else (lambda: time.time_ns() // 10**6)
        code = run(
            [str(a) for a in argv],
            Io({**self.env, **(env or {})}, io.StringIO(stdin), out, err, now_ms=clock),
        )
        return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def ctl(receiver: RealReceiver) -> Edgectl:
    return Edgectl(
        {"TIERLESS_CLOUD_URL": receiver.url, "TIERLESS_ADMIN_TOKEN_FILE": str(receiver.admin_file)}
    )


def edge_agent(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The agent's own CLI (its check-config is the judge of the configs we write)."""
    return subprocess.run(
        [str(BIN / "edge-agent"), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ},
    )
