"""Provenance with real processes: readings buffered under one config while the receiver is
away, uploaded after the config file was changed, still name the config that read them, and the
receiver's batch listing traces every reading to its config."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from typing import Any

import pytest

from tests.agent.e2e import make_agent, wait_until
from wire.http import device_batches_path

pytestmark = pytest.mark.e2e
DEVICE = "gw-prov"


def version(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def batches(receiver) -> list[dict[str, Any]]:
    token = receiver.read_file.read_text()
    query = f"?from_ms=0&to_ms={int(time.time() * 1000) + 3_600_000}&limit=100000"
    req = urllib.request.Request(
        receiver.url + device_batches_path(DEVICE) + query,
        headers={"authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return list(json.loads(resp.read())["batches"])


def test_a_backlog_taken_under_config_a_still_names_a_after_the_switch_to_b(
    tmp_path, receiver, agents
):
    sources = '[[sources]]\ntype = "test"\nrate_hz = 20\nseries = 2\n'
    agent = make_agent(tmp_path / "gw", receiver.url, receiver, agents,
                       device_id=DEVICE, sources=sources)  # fmt: skip
    config_a = version(agent.config)
    receiver.stop()  # everything config A reads waits in the buffer
    agent.start()
    agent.wait_running()
    assert agent.stop() == 0
    under_a = agent.committed()
    switched_ms = int(time.time() * 1000)
    agent.config.write_text(agent.config.read_text().replace("rate_hz = 20", "rate_hz = 10"))
    config_b = version(agent.config)
    assert config_b != config_a
    receiver.start()
    agent.start()
    try:
        wait_until(
            lambda: any(b["config_version"] == config_b for b in batches(receiver)),
            60,
            "batches under config B",
            agent.log_text,
            receiver.log_text,
        )
    finally:
        assert agent.stop() == 0
    listed = batches(receiver)
    by_version: dict[str, list[dict[str, Any]]] = {}
    for b in listed:
        by_version.setdefault(b["config_version"], []).append(b)
    assert set(by_version) == {config_a, config_b}
    # every reading config A took came in a batch naming A, all of them before the switch
    assert sum(b["readings"] for b in by_version[config_a]) == under_a
    assert max(b["max_ts_ms"] for b in by_version[config_a]) < switched_ms
    assert min(b["min_ts_ms"] for b in by_version[config_b]) >= switched_ms
