"""Remote configuration with real processes: `edge-cloud serve` and `edge-agent run`.

A push is applied within seconds; a config whose serial port cannot open is rolled back and
reported; a kill -9 in the middle of an apply leaves the gateway on the old or the new config,
never a mix, and every reading arrives once. The 50-gateway group push is tests/e2e/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.remote import GOOD_NAME, PENDING_NAME, PINNED_NAME, PUSHED_NAME, load_running
from tests.agent.e2e import AgentProc, Receiver, assert_contiguous_once, make_agent, wait_until
from wire.keys import b64url_encode, load_private_key_pem, public_key_to_raw
from wire.remoteconfig import ADMIN_CONFIG_PATH, ADMIN_CONFIG_STATUS_PATH, SignedConfig

pytestmark = pytest.mark.e2e
DEVICE = "gw-remote"
COUNTER = '[[sources]]\ntype = "test"\nname = "counter"\nrate_hz = 40\nseries = 1\n'
STEADY = (
    '[[sources]]\ntype = "test"\nname = "steady"\nrate_hz = 20\nseries = 1\nmetric = "steady"\n'
)
BROKEN_SCALE = (
    '[[sources]]\ntype = "ascii"\nname = "scale"\n'
    'port = { path = "/dev/tierless-no-such-tty" }\nmode = "streaming"\n'
    "pattern = '(?P<net>\\d+)'\n"
    'values = [{ group = "net", metric = "net_mass", unit = "kg" }]\n'
)


def gateway(tmp_path: Path, receiver: Receiver, agents: list[AgentProc]) -> AgentProc:
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        device_id=DEVICE,
        sources=COUNTER + STEADY,
        cloud={"health_interval_s": 1, "config_apply_window_s": 2},
    )
    # what `edgectl enroll` pins from the enrol answer: the receiver's config-signing key
    key = load_private_key_pem((receiver.directory / "tierless-config-signing.key").read_bytes())
    assert isinstance(key, Ed25519PrivateKey)
    pinned = b64url_encode(public_key_to_raw(key.public_key()))
    (agent.config.parent / PINNED_NAME).write_text(pinned + "\n")
    return agent


def push(receiver: Receiver, config: str) -> int:
    answer = receiver.admin("POST", ADMIN_CONFIG_PATH, {"config": config, "device": DEVICE})
    return int(answer["targets"][0]["version"])


def status(receiver: Receiver) -> dict[str, Any]:
    devices = receiver.admin("GET", ADMIN_CONFIG_STATUS_PATH)["devices"]
    return next(d for d in devices if d["device_id"] == DEVICE)


def drain_and_check(receiver: Receiver, agent: AgentProc, series: int) -> None:
    """Stop, then run once more with no source so the backlog drains, and count."""
    assert agent.stop() == 0
    committed = agent.committed()
    text = agent.config.read_text().replace(COUNTER, "").replace(STEADY, "")
    agent.config.write_text(text)
    for name in (PUSHED_NAME, GOOD_NAME):  # the pushed sources must not run either
        (agent.config.parent / name).unlink(missing_ok=True)
    agent.start()
    wait_until(
        lambda: sum(len(v) for v in receiver.readings(DEVICE).values()) >= committed,
        60,
        "the backlog to drain",
        agent.log_text,
    )
    assert agent.stop() == 0
    tops = assert_contiguous_once(receiver.readings(DEVICE), series=series)
    assert sum(tops.values()) == committed


def test_a_push_is_applied_within_seconds_and_nothing_is_lost(tmp_path, receiver, agents):
    agent = gateway(tmp_path, receiver, agents)
    agent.start()
    agent.wait_running()
    pushed_at = time.monotonic()
    version = push(receiver, COUNTER.replace("rate_hz = 40", "rate_hz = 80") + STEADY)
    wait_until(
        lambda: status(receiver)["last_result"] == "applied",
        60,
        "the push to be applied",
        agent.log_text,
        receiver.log_text,
    )
    took_s = time.monotonic() - pushed_at
    assert status(receiver)["running"] == f"v{version}"
    assert took_s < 20, took_s  # the window is 2 s, reports every 1 s
    print(f"push applied and reported in {took_s:.1f} s")  # the figure, with -s
    drain_and_check(receiver, agent, series=2)


def test_a_config_whose_serial_port_cannot_open_is_rolled_back(tmp_path, receiver, agents):
    agent = gateway(tmp_path, receiver, agents)
    agent.start()
    agent.wait_running()
    before = load_running(agent.config).version
    push(receiver, STEADY + BROKEN_SCALE)
    wait_until(
        lambda: (status(receiver)["last_result"] or "").startswith("rolled back"),
        60,
        "the rollback",
        agent.log_text,
        receiver.log_text,
    )
    s = status(receiver)
    assert s["last_result"] == "rolled back: source scale down: port_lost"
    assert s["running"] == before
    assert not (agent.config.parent / PUSHED_NAME).exists()
    drain_and_check(receiver, agent, series=2)


def test_kill_9_during_an_apply_leaves_the_old_or_the_new_config(tmp_path, receiver, agents):
    agent = gateway(tmp_path, receiver, agents)
    agent.start()
    agent.wait_running()
    before = load_running(agent.config).version
    pushed_file = agent.config.parent / PUSHED_NAME
    version = push(receiver, COUNTER.replace("rate_hz = 40", "rate_hz = 60") + STEADY)
    # the moment the new file is in place, before the window has passed
    wait_until(pushed_file.exists, 60, "the apply to start", agent.log_text)
    agent.kill9()
    signed = msgspec.json.decode(pushed_file.read_bytes(), type=SignedConfig)  # whole, not a mix
    assert signed.version == version
    interrupted = (agent.config.parent / PENDING_NAME).exists()  # inside the window (likely)
    agent.start()
    agent.wait_running()
    # the start put the old config back if the window had not passed; the next
    # acknowledgement applies the new one again, and this time it passes
    wait_until(
        lambda: status(receiver)["last_result"] == "applied",
        60,
        "the new config applied after the restart",
        agent.log_text,
    )
    assert status(receiver)["running"] == f"v{version}"
    if interrupted:
        assert "interrupted inside its health window" in agent.log_text()
        assert before != f"v{version}"
    drain_and_check(receiver, agent, series=2)
