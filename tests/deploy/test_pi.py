"""`make pi-check`: the gateway installed and run on ARM (arm64 and armhf), under emulation.

Per architecture, in a fresh overlay on the Debian bookworm root of `deploy/pi/pi-root.sh`
(`tests/deploy/pi_root.py`), the steps of docs/operations.md (*Raspberry Pi*) as written there:
the service user (in `dialout`, for the serial port), its directory, a virtualenv with
`tierless[agent]` from the project's wheel plus PyPI (`zstd` too on arm64; armhf has no
zstandard wheel, and msgspec and cffi are built by pip), `edge-agent --version`, enrolment with
a token made by the operator on the host, `edge-agent check-config`, `edgectl doctor`, then
`edge-agent run` as the service user with the test source and an emulated SDM630 meter on
/dev/ttyUSB0 (a pty of `tests.deploy.pi_meter` on the host). It passes when the receiver
(`edge-cloud serve` on the host; the chroot shares its loopback) holds readings of both sources
and the agent stops cleanly on SIGTERM. Timings go to .artifacts/pi-check-ARCH.json and the output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from demo.cloud import ReceiverApi
from demo.procs import free_port, http_ok
from tests.deploy.conftest import DIST, ROOT
from tests.deploy.pi_root import STAMP, PiRoot, cached_root
from wire.models import Quality
from wire.version import release

VERSION = release()
EXTRAS = {"arm64": "agent,zstd", "armhf": "agent"}
# What pip may compile (no wheel on PyPI); with pip's cache of wheels it built, nothing.
COMPILED = {"arm64": set[str](), "armhf": {"msgspec", "cffi"}}
ENCODINGS = {"arm64": "('zstd', 'gzip')", "armhf": "('gzip',)"}
ENCODINGS_PY = "from wire.compression import available_encodings as a; print(a())"
DIR = "/var/lib/edge-agent"
HOST_BIN = Path(sys.executable).parent
# armhf: pip compiles msgspec and cffi, over 10 min under emulation on a loaded machine
PIP_TIMEOUT_S = 3000
RUN_TIMEOUT_S = 300  # first readings at the receiver: the agent starts slowly under emulation


# The install of docs/operations.md (Raspberry Pi), with VERSION for the release; the gateway's
# wheelhouse is at /media/usb/wheelhouse (pi-check: dist/, which holds the wheel; pip takes the
# rest from PyPI). 32-bit ARM leaves out the zstd extra.
INSTALL = (
    ("useradd", "useradd --system --home /var/lib/edge-agent --shell /usr/sbin/nologin "
     "--groups dialout edge-agent"),
    ("directory", "install -d -m 0700 -o edge-agent -g edge-agent /var/lib/edge-agent"),
    ("venv", "python3 -m venv /opt/tierless-VERSION"),
    ("pip install", "/opt/tierless-VERSION/bin/pip install --find-links /media/usb/wheelhouse "
     "'tierless[agent,zstd]==VERSION'"),
    ("link", "ln -sfn /opt/tierless-VERSION /opt/tierless"),
    ("edge-agent --version", "/opt/tierless/bin/edge-agent --version"),
)  # fmt: skip


def install_commands(arch: str, version: str = VERSION) -> list[tuple[str, str]]:
    out = []
    for step, line in INSTALL:
        if arch == "armhf":
            line = line.replace("[agent,zstd]", "[agent]")
        out.append((step, line.replace("VERSION", version)))
    return out


def test_the_docs_say_it():
    """The commands pi-check runs are the ones docs/operations.md gives, word for word."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("## Raspberry Pi") :]
    section = section[: section.index("\n## ", 1)]
    for _, line in INSTALL:
        assert line in section, line
    assert "32-bit: 'tierless[agent]==VERSION'" in section
    assert "python3-venv gcc python3-dev libffi-dev" in section


def agent_toml(device: str, url: str, metrics_port: int) -> str:
    return f"""# written by tests/deploy/test_pi.py
[device]
id = "{device}"
key_file = "device.key"

[cloud]
url = "{url}"
batch_interval_ms = 1000

[buffer]
path = "buffer.db"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[clock]
# The receiver runs on this machine: the same clock.
sync_check = "assume_synced"

[[sources]]
type = "test"
name = "pi-check-test"
rate_hz = 1
series = 2
metric = "energy_import"
unit = "kWh"
site = "pi-check"
area = "test-source"
medium = "electricity"

[[sources]]
type = "modbus"
name = "incomer-bus"
port = {{ path = "/dev/ttyUSB0", baudrate = 115200 }}
timeout_ms = 2000

[[sources.devices]]
name = "incomer"
unit_id = 1
profile = "eastron-sdm630"
poll_interval_ms = 2000
site = "pi-check"
area = "meter"
"""


class Steps:
    """Runs commands in the root, failing with their output; keeps each step's time."""

    def __init__(self, root: PiRoot) -> None:
        self.root = root
        self.times: dict[str, float] = {}

    def __call__(
        self, step: str, *command: str, user: str | None = None, timeout: float = 600
    ) -> str:
        start = time.monotonic()
        done = self.root.run(command, user=user, timeout=timeout)
        self.times[step] = round(time.monotonic() - start, 1)
        assert done.returncode == 0, f"{step}: {' '.join(command)}\n{done.stdout}{done.stderr}"
        return done.stdout


def _start(argv: list[str | Path], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, cwd=cwd
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _wait(what: str, ready: Any, timeout_s: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {p}:\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
            pytest.fail(f"{what}: not within {timeout_s} s{tails}")
        time.sleep(1)


def _counts(api: ReceiverApi, device: str, since_ms: int) -> dict[str, int]:
    """GOOD readings stored per `area` tag (test-source, meter) for the device: a meter that
    does not answer gives BAD markers, which must not count."""
    now = int(time.time() * 1000) + 60_000
    out: dict[str, int] = {}
    if api.device(device) is None:
        return out
    for s in api.series(device):
        good = [p for p in api.readings(s.id, since_ms, now) if p.quality == Quality.GOOD]
        out[s.area] = out.get(s.area, 0) + len(good)
    return out


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("arch", ["arm64", "armhf"])
def test_gateway_on_arm(arch, deploy_tests, tmp_path):
    assert os.geteuid() == 0, "pi-check needs root (mounts, chroot)"
    assert (cached_root(arch) / STAMP).exists(), f"no root for {arch}: deploy/pi/pi-root.sh {arch}"
    wheels = sorted(DIST.glob(f"tierless-{VERSION}-*.whl"))
    assert wheels, f"{DIST}: no tierless wheel; run make dist"
    device = f"gw-pi-{arch}"
    cloud, meter_dir = tmp_path / "cloud", tmp_path / "meter"
    cloud.mkdir()
    meter_dir.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    with PiRoot(arch, tmp_path / "pi", DIST) as root:
        steps = Steps(root)
        cached = sum(f.stat().st_size for f in root.pip_cache.rglob("*") if f.is_file())
        try:
            # docs/operations.md, Raspberry Pi, as written there (test_the_docs_say_it checks).
            for step, line in install_commands(arch):
                timeout = PIP_TIMEOUT_S if step == "pip install" else 600
                out = steps(step, *shlex.split(line), timeout=timeout)
                if step == "pip install":
                    built = set(re.findall(r"Building wheel for (\S+)", out))
                    assert built <= COMPILED[arch], f"pip compiled {built} on {arch}"
            assert out == f"edge-agent {VERSION}\n"
            out = steps("encodings", "/opt/tierless/bin/python", "-c", ENCODINGS_PY)
            assert out.strip() == ENCODINGS[arch]

            # The receiver and the meter, on the host.
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            db = f"sqlite:///{cloud / 'cloud.db'}"
            serve: list[str | Path] = [
                HOST_BIN / "edge-cloud",
                "serve",
                "--db",
                db,
                "--port",
                str(port),
            ]
            procs.append(_start(serve, cloud / "receiver.log", cwd=cloud))
            meter_env = [sys.executable, "-m", "tests.deploy.pi_meter", meter_dir]
            procs.append(_start(meter_env, meter_dir / "meter.log", cwd=ROOT))
            logs = [cloud / "receiver.log", meter_dir / "meter.log"]
            _wait("the receiver", lambda: http_ok(f"{url}/healthz"), 30, logs)
            _wait("the meter", lambda: (meter_dir / "ready").exists(), 30, logs)
            pty = Path((meter_dir / "ready").read_text(encoding="utf-8"))
            # As udev gives a USB serial adapter on a Pi: root:dialout 0660.
            os.chown(pty, 0, root.group_id("dialout"))
            pty.chmod(0o660)
            root.bind(pty, root.path / "dev/ttyUSB0")

            # Enrolment: the token from the operator's machine, carried to the gateway.
            token = root.path / "tmp/enrol.token"
            made = subprocess.run(
                [str(HOST_BIN / "edgectl"), "token", "create", "--device", device, "--ttl", "1h",
                 "--out", str(token), "--cloud", url, "--admin-token-file",
                 str(cloud / "tierless-admin.token")],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            uid, gid, _ = root.account("edge-agent")
            os.chown(token, uid, gid)
            config = root.path / DIR.lstrip("/") / "agent.toml"
            config.write_text(agent_toml(device, url, free_port()), encoding="utf-8")
            os.chown(config, uid, gid)
            config.chmod(0o600)
            enroll = ["enroll", "--dir", DIR, "--cloud", url, "--device", device]
            steps("enroll", "/opt/tierless/bin/edgectl", *enroll, "--token-file",
                  "/tmp/enrol.token", user="edge-agent")  # fmt: skip
            token.unlink()
            steps("check-config", "/opt/tierless/bin/edge-agent", "check-config",
                  f"{DIR}/agent.toml", user="edge-agent")  # fmt: skip
            steps("doctor", "/opt/tierless/bin/edgectl", "doctor", "--dir", DIR, user="edge-agent")

            # A short run, as the unit runs it.
            api = ReceiverApi(url, (cloud / "tierless-read.token").read_text().strip())
            since = int(time.time() * 1000) - 60_000
            start = time.monotonic()
            agent_log = tmp_path / "agent.log"
            argv = root.argv(["/opt/tierless/bin/edge-agent", "run", "--config",
                              f"{DIR}/agent.toml"], user="edge-agent")  # fmt: skip
            agent = _start(list(argv), agent_log)
            procs.insert(0, agent)
            logs.append(agent_log)

            def arrived() -> bool:
                assert agent.poll() is None, agent_log.read_text(errors="replace")
                counts = _counts(api, device, since)
                return counts.get("test-source", 0) > 0 and counts.get("meter", 0) > 0

            _wait("readings of both sources at the receiver", arrived, RUN_TIMEOUT_S, logs)
            steps.times["first readings"] = round(time.monotonic() - start, 1)
            assert _stop(agent) == 0, agent_log.read_text(errors="replace")
            counts = _counts(api, device, since)
        finally:
            for proc in procs:
                _stop(proc)
    served = json.loads((meter_dir / "served.json").read_text(encoding="utf-8"))
    figures = {
        "arch": arch,
        "pip_cache_mb_before": round(cached / 1e6, 1),
        "seconds": steps.times,
        "good_readings": counts,
        "meter": served,
    }
    artifacts = ROOT / ".artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / f"pi-check-{arch}.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"\npi-check {arch}: {json.dumps(figures)}")
    assert counts["test-source"] > 0
    assert counts["meter"] > 0
    assert served["answered"] > 0
