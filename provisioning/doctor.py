"""`edgectl doctor`: is this gateway ready to run the agent? One PASS/WARN/FAIL line per check,
each FAIL saying what to do. Read-only: it writes nothing and changes nothing.

Checks, in order (later ones are skipped when what they need failed):
    config         agent.toml passes the agent's own parser and validator (`agent.config`), and
                   `edge-agent check-config` (which also loads the key and CA as the agent
                   would) accepts it when installed here
    key file       the device key: OpenSSH permission rules, an Ed25519 PEM key
    leftovers      an interrupted rotation or enrolment (`device.key.next` / `.enrolling`)
    receiver       /healthz answers; TLS verified against cloud.ca_file
    enrolment      a signed request with the key is accepted (not unknown, revoked or disabled)
    clock          NTP state as the agent judges it, and our offset from the receiver's clock
    buffer         the buffer's directory exists and is writable (or can be created)
    source ports   every serial port named by a source exists, is a tty, and may be opened
    endpoints      every broker / Modbus-TCP host named by a source accepts a TCP connection

Sources come typed from the agent's parser; doctor asks each only where it reads from, without
knowing its type (the agent owns the schema): a `port.path` is a serial port; `transport = "tcp"`
with `host` and `tcp_port` (Modbus TCP), or an `mqtt://` / `mqtts://` `url`, is a TCP endpoint.
"""

from __future__ import annotations

import enum
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hostio import clocksync
from provisioning import agentconfig, secretfiles
from provisioning.client import Receiver, Timed, normalise_url
from provisioning.enroll import PENDING_SUFFIX
from provisioning.errors import ProvisioningError
from provisioning.rotate import next_key_path
from wire.keys import key_id

CLOCK_FAIL_S = 300.0  # beyond this, TLS validity and timestamps are at risk
TCP_TIMEOUT_S = 3.0


class Status(enum.StrEnum):
    PASS = "PASS"  # noqa: S105 - a check result, not a password
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    name: str
    message: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.message}"


@dataclass
class Doctor:
    directory: Path
    config_file: Path | None = None
    transport: httpx.BaseTransport | None = None
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    kernel_synced: Callable[[], bool | None] = clocksync.kernel_synced

    def run(self) -> Iterator[Check]:
        path = self.config_file or self.directory / agentconfig.CONFIG_NAME
        try:
            config = agentconfig.read(path)
        except ProvisioningError as exc:
            yield Check(Status.FAIL, "config", str(exc))
            return
        yield self._agent_check(path)
        key = yield from self._key(config)
        server_time = yield from self._receiver(config, key)
        yield self._clock(config, server_time)
        yield self._buffer(config)
        yield from self._sources(config)

    # -- local files ----------------------------------------------------------------------

    def _agent_check(self, path: Path) -> Check:
        exe = _edge_agent()
        if exe is None:
            return Check(
                Status.PASS,
                "config",
                f"{path}: accepted by the agent's parser (edge-agent is not installed here, "
                "so loading the key and CA as the agent does was skipped)",
            )
        try:
            done = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
                [exe, "check-config", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check(Status.FAIL, "config", f"cannot run {exe}: {exc}")
        if done.returncode == 0:
            return Check(Status.PASS, "config", f"{path}: accepted by edge-agent check-config")
        problems = "; ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        return Check(Status.FAIL, "config", f"edge-agent check-config refuses it: {problems[:600]}")

    def _key(
        self, config: agentconfig.GatewayConfig
    ) -> Generator[Check, None, Ed25519PrivateKey | None]:
        key: Ed25519PrivateKey | None = None
        try:
            key = secretfiles.load_private_key(config.key_file)
        except ProvisioningError as exc:
            yield Check(Status.FAIL, "key file", str(exc))
        else:
            yield Check(
                Status.PASS,
                "key file",
                f"{config.key_file}: mode 0600, key id {key_id(key.public_key())}",
            )
        leftovers = [
            p
            for p in (
                next_key_path(config.key_file),
                config.key_file.with_name(config.key_file.name + PENDING_SUFFIX),
            )
            if secretfiles.exists(p)
        ]
        if leftovers:
            names = ", ".join(str(p) for p in leftovers)
            yield Check(
                Status.WARN,
                "leftovers",
                f"{names} left by an interrupted run; finish it: edgectl rotate-key --dir "
                f"{self.directory} (for .next) or edgectl enroll again (for .enrolling)",
            )
        return key

    # -- the receiver ---------------------------------------------------------------------

    def _receiver(
        self, config: agentconfig.GatewayConfig, key: Ed25519PrivateKey | None
    ) -> Generator[Check, None, Timed | None]:
        try:
            url = normalise_url(config.cloud_url, allow_insecure_http=config.allow_insecure_http)
            with Receiver(
                url, ca_file=config.ca_file, transport=self.transport, now_ms=self.now_ms
            ) as receiver:
                health = receiver.health()
                how = "TLS verified" if url.startswith("https:") else "plain http"
                yield Check(Status.PASS, "receiver", f"{url} answers ({how})")
                if key is None:
                    return health
                try:
                    head = receiver.chain_head(key)
                except ProvisioningError as exc:
                    yield Check(
                        Status.FAIL,
                        "enrolment",
                        f"{exc}; re-enrol: edgectl enroll --replace with a new token",
                    )
                    return health
                yield Check(
                    Status.PASS,
                    "enrolment",
                    f"key accepted for {config.device_id!r}; the receiver's chain ends at seq "
                    f"{head.head_seq}",
                )
                return head if head.server_time_ms is not None else health
        except ProvisioningError as exc:
            yield Check(Status.FAIL, "receiver", str(exc))
            return None

    # -- the clock ------------------------------------------------------------------------

    def _clock(self, config: agentconfig.GatewayConfig, server: Timed | None) -> Check:
        mode = config.sync_check
        synced = clocksync.sync_state(
            mode, flag_file=config.timesyncd_flag_file, kernel=self.kernel_synced
        )
        offset_s = None
        if server is not None and server.server_time_ms is not None:
            offset_s = (server.local_mid_ms - server.server_time_ms) / 1000
        against = "" if offset_s is None else f", {offset_s:+.1f} s from the receiver's clock"
        if offset_s is not None and abs(offset_s) > CLOCK_FAIL_S:
            return Check(
                Status.FAIL,
                "clock",
                f"this clock is {offset_s:+.0f} s off the receiver's: set it and enable NTP "
                "(timedatectl set-ntp true); TLS and reading timestamps depend on it",
            )
        if synced is None:
            return Check(
                Status.PASS, "clock", f"sync_check = receiver_only: the agent corrects{against}"
            )
        if synced:
            return Check(Status.PASS, "clock", f"synchronised (sync_check = {mode}){against}")
        return Check(
            Status.WARN,
            "clock",
            f"not NTP-synchronised (sync_check = {mode}){against}: readings are flagged until "
            "the agent corrects against the receiver; enable NTP: timedatectl set-ntp true",
        )

    # -- buffer and sources ---------------------------------------------------------------

    def _buffer(self, config: agentconfig.GatewayConfig) -> Check:
        path = config.buffer_path
        probe = path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            return Check(
                Status.FAIL,
                "buffer",
                f"{probe} is not writable by this user, so {path} cannot be created; "
                "run as the agent's user or fix the directory's owner",
            )
        return Check(Status.PASS, "buffer", f"{path} can be written")

    def _sources(self, config: agentconfig.GatewayConfig) -> Iterator[Check]:
        sources = config.agent.sources
        if not sources:
            yield Check(Status.WARN, "sources", "no sources configured: nothing will be read")
            return
        for i, source in enumerate(sources):
            name = f"sources[{i}] {source.name}".strip()
            for port in _serial_paths(source):
                yield _serial_check(name, port)
            for host, tcp_port, what in _endpoints(source):
                yield _tcp_check(name, host, tcp_port, what)


def _serial_paths(source: object) -> list[str]:
    """A source on a serial line names it in `port.path` (resolved against the config file)."""
    path = getattr(getattr(source, "port", None), "path", None)
    return [path] if isinstance(path, str) else []


def _endpoints(source: object) -> list[tuple[str, int, str]]:
    url = getattr(source, "url", None)
    if isinstance(url, str) and url.startswith(("mqtt://", "mqtts://")):
        parts = urlsplit(url)  # the agent's validator accepted it: host present, port valid
        default = 8883 if parts.scheme == "mqtts" else 1883
        return [(parts.hostname, parts.port or default, "MQTT broker")] if parts.hostname else []
    host, port = getattr(source, "host", None), getattr(source, "tcp_port", None)
    if getattr(source, "transport", None) == "tcp" and isinstance(host, str) and host:
        return [(host, port if isinstance(port, int) else 502, "Modbus TCP")]
    return []


def _serial_check(name: str, path: str) -> Check:
    label = f"{name} port"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(
            Status.FAIL,
            label,
            f"{path} does not exist: plug the adapter in, or fix the path "
            "(stable names: ls -l /dev/serial/by-id/)",
        )
    except OSError as exc:
        return Check(Status.FAIL, label, f"{path}: {exc.strerror}")
    if not stat.S_ISCHR(st.st_mode):
        return Check(Status.FAIL, label, f"{path} is not a serial device (not a tty)")
    if not os.access(path, os.R_OK | os.W_OK):
        return Check(
            Status.FAIL,
            label,
            f"{path} cannot be opened read/write by this user: add the agent's user to the "
            "port's group (usually dialout: usermod -aG dialout edge-agent)",
        )
    return Check(Status.PASS, label, f"{path} is a serial device this user may open")


def _tcp_check(name: str, host: str, port: int, what: str) -> Check:
    label = f"{name} {what}"
    try:
        with socket.create_connection((host, port), timeout=TCP_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return Check(
            Status.FAIL,
            label,
            f"{host}:{port} does not accept connections ({reason}): start the {what} "
            "or fix the address in the config",
        )
    return Check(Status.PASS, label, f"{host}:{port} accepts connections")


def _edge_agent() -> str | None:
    beside = Path(sys.executable).parent / "edge-agent"
    if beside.exists():
        return str(beside)
    return shutil.which("edge-agent")
