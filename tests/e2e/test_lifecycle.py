"""A gateway's whole life with real processes: `edge-cloud serve`, `edge-agent run`, `edgectl`.

token -> enrol -> the agent syncs -> the key is rotated while the agent runs (no batch refused,
nothing lost) -> the device is revoked (the agent stops uploading, keeps its data, and
`edge-agent status` says why) -> re-enrolment -> the buffered data arrives, every reading once.

The test source counts 1, 2, 3, ... per series and resumes from its last committed value after a
restart, so "nothing lost, nothing twice" is: the receiver holds exactly 1..n for each series,
and n per series adds up to what the agent committed. The agent runs through rotation,
revocation and re-enrolment without a restart (it follows its key file); it is restarted once at
the end, with its source removed, only so that it drains and the count can be exact.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioning import secretfiles
from tests.provisioning.conftest import BIN, Edgectl, RealReceiver
from wire.keys import key_id

pytestmark = pytest.mark.e2e
DEVICE = "gw-life"
TUNING = {
    "[cloud]\n": "[cloud]\nbatch_interval_ms = 100\nretry_initial_ms = 20\nretry_max_s = 0.5\n"
    "refused_recheck_s = 0.3\n",
    "[buffer]\n": "[buffer]\nflush_interval_ms = 50\n",
    'sync_check = "auto"': 'sync_check = "assume_synced"\n\n[metrics]\nlisten = ""',
}
SOURCE = '\n[[sources]]\ntype = "test"\nrate_hz = 40\nseries = 2\n'


@dataclass
class AgentProcess:
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = open(self.config.parent / "agent.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "edge-agent"), "run", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.log.close()

    def status(self, *, as_json: bool = True) -> Any:
        done = subprocess.run(
            [str(BIN / "edge-agent"), "status", "--config", str(self.config)]
            + (["--json"] if as_json else []),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if done.returncode != 0:
            return {} if as_json else done.stderr
        return json.loads(done.stdout) if as_json else done.stdout

    def log_text(self) -> str:
        return (self.config.parent / "agent.log").read_text(errors="replace")[-3000:]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, *logs: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(log() for log in logs))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[RealReceiver]:
    r = RealReceiver(tmp_path / "cloud")
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    made: list[AgentProcess] = []
    try:
        yield made
    finally:
        for a in made:
            a.kill()


def provision(tmp_path: Path, receiver: RealReceiver, ctl: Edgectl) -> Path:
    """token -> enroll, then this test's tuning and source in the config edgectl wrote."""
    token_file = tmp_path / "gw.token"
    r = ctl("token", "create", "--device", DEVICE, "--out", token_file)
    assert r.code == 0, r.text
    gw = tmp_path / "gw"
    r = ctl("enroll", "--dir", gw, "--device", DEVICE, "--token-file", token_file)
    assert r.code == 0, r.text
    config = gw / "agent.toml"
    text = config.read_text()
    for old, new in TUNING.items():
        assert old in text
        text = text.replace(old, new, 1)
    config.write_text(text + SOURCE)
    check = subprocess.run(
        [str(BIN / "edge-agent"), "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    return gw


def keyid_of(path: Path) -> str:
    return key_id(secretfiles.load_private_key(path).public_key())


def batch_keyids(receiver: RealReceiver) -> list[str]:
    return [k for (k,) in receiver.query("SELECT keyid FROM batch ORDER BY seq")]


def rejections(receiver: RealReceiver) -> dict[str, float]:
    """The receiver's refusals by error code, from its /metrics."""
    url = f"{receiver.url}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("tierless_rejections_total{"):
            labels, value = line.rsplit(" ", 1)
            if float(value):
                out[labels.split('reason="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def readings(receiver: RealReceiver) -> int:
    return int(receiver.device(DEVICE).get("readings", 0))


def test_token_enrol_sync_rotate_revoke_reenrol(tmp_path, receiver, agents):
    ctl = Edgectl(
        {"TIERLESS_CLOUD_URL": receiver.url, "TIERLESS_ADMIN_TOKEN_FILE": str(receiver.admin_file)}
    )
    gw = provision(tmp_path, receiver, ctl)
    first_key = keyid_of(gw / "device.key")
    agent = AgentProcess(gw / "agent.toml")
    agents.append(agent)
    agent.start()
    wait_until(lambda: readings(receiver) > 40, 20, "first readings", agent.log_text)

    # -- rotation while the agent runs: it follows the key file, nothing is refused --------
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 0, r.text
    second_key = keyid_of(gw / "device.key")
    assert receiver.keys(DEVICE) == {first_key: "retiring", second_key: "active"}
    wait_until(
        lambda: batch_keyids(receiver)[-1] == second_key,
        10,
        "a batch signed by the rotated key",
        agent.log_text,
    )
    after_rotation = readings(receiver)
    wait_until(lambda: readings(receiver) > after_rotation + 80, 20, "uploads after rotation")
    assert rejections(receiver) == {}  # not one request refused across the rotation
    status = agent.status()
    assert status["uplink"]["last_error"] is None, status
    assert not status["uplink"]["state"].startswith("stopped"), status

    # -- revocation: uploads stop, data stays, status says why ----------------------------
    r = ctl("devices", "revoke", DEVICE)
    assert r.code == 0, r.text
    wait_until(
        lambda: agent.status().get("uplink", {}).get("state", "").startswith("stopped: 403"),
        10,
        "the agent to notice the revocation",
        agent.log_text,
    )
    stored_at_revocation = readings(receiver)
    buffered = agent.status()["buffer"]["readings"]
    time.sleep(1.0)
    assert readings(receiver) == stored_at_revocation  # nothing more is accepted
    backlog = agent.status()["buffer"]["readings"]
    assert backlog > buffered  # the agent keeps collecting
    human = agent.status(as_json=False)
    assert "stopped: 403" in human, human
    assert "re-enrolment needed" in human, human

    # -- re-enrolment: the same gateway, a new key, the chain it had ----------------------
    token_file = tmp_path / "again.token"
    assert ctl("token", "create", "--device", DEVICE, "--out", token_file).code == 0
    r = ctl("enroll", "--dir", gw, "--device", DEVICE, "--token-file", token_file)
    assert r.code == 9  # already enrolled: replacing the key is explicit
    r = ctl("enroll", "--dir", gw, "--device", DEVICE, "--token-file", token_file, "--replace")
    assert r.code == 0, r.text
    third_key = keyid_of(gw / "device.key")
    assert receiver.keys(DEVICE) == {
        first_key: "revoked",
        second_key: "revoked",
        third_key: "active",
    }
    # the running agent takes the new key at its next re-check: the backlog arrives
    wait_until(
        lambda: readings(receiver) >= stored_at_revocation + backlog,
        20,
        "the buffered readings to arrive",
        agent.log_text,
        receiver.log_text,
    )
    assert batch_keyids(receiver)[-1] == third_key

    # -- account for every reading: stop making new ones, drain, compare ------------------
    assert agent.stop() == 0
    config = gw / "agent.toml"
    config.write_text(config.read_text().replace(SOURCE, ""))
    agent.start()

    def drained() -> bool:
        s = agent.status()
        return (
            bool(s)
            and s["buffer"]["readings"] == 0
            and readings(receiver) == s["readings_committed"]
        )

    wait_until(drained, 30, "the last readings to arrive", agent.log_text, receiver.log_text)
    assert agent.stop() == 0

    committed = agent.status()["readings_committed"]
    per_series: dict[str, list[float]] = {}
    for metric, value in receiver.query(
        "SELECT s.metric, r.value FROM reading r JOIN series s ON s.id = r.series_id "
        "WHERE s.device_id = ? ORDER BY s.metric, r.ts_ms, r.value",
        (DEVICE,),
    ):
        per_series.setdefault(metric, []).append(value)
    assert len(per_series) == 2
    for metric, values in per_series.items():
        assert values == [float(i) for i in range(1, len(values) + 1)], metric
    assert sum(len(v) for v in per_series.values()) == committed
    device = receiver.device(DEVICE)
    assert (device["gaps"], device["forks"]) == (0, 0)
    assert set(batch_keyids(receiver)) == {first_key, second_key, third_key}
    # refused only while revoked, only with 403
    assert rejections(receiver) == {"forbidden": rejections(receiver)["forbidden"]}
