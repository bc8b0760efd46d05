"""Behaviour against real receiver processes over loopback, with real SQLite files.

The test source resumes each series from its last *committed* value, so after any number of
crashes the cloud must hold 1, 2, ..., n for every series, each exactly once and in time order:
a committed reading that went missing shows up as a gap, a duplicate as a repeated value.
"""

from __future__ import annotations

import random
import time

import pytest

from soak.proxy import FaultProxy
from tests.agent.e2e import (
    CHAOS_CYCLES,
    AgentProc,
    assert_contiguous_once,
    make_agent,
    wait_until,
)

pytestmark = pytest.mark.e2e
SOURCE = '[[sources]]\ntype = "test"\nrate_hz = {rate}\nseries = {series}\n{extra}'


def source(rate: int = 100, series: int = 3, extra: str = "") -> str:
    return SOURCE.format(rate=rate, series=series, extra=extra)


def whole_log(agent: AgentProc) -> str:
    return (agent.config.parent / "agent.log").read_text(errors="replace")


def drained(agent) -> bool:
    status = agent.status()
    return bool(status) and status["buffer"]["readings"] == 0


# Ten agent start-ups, five of them waited for: each takes seconds on a machine whose cores are
# oversubscribed several times over (there, the whole test once took over 119 s).
@pytest.mark.timeout(300)
def test_kill_9_agent_and_receiver_exactly_once(tmp_path, receiver, agents):
    rng = random.Random(int(time.time()) if CHAOS_CYCLES > 20 else 7)
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=source(rate=100, series=3),
        cloud={"batch_interval_ms": 50},
        buffer={"flush_interval_ms": 30},
    )
    for cycle in range(CHAOS_CYCLES):
        agent.start()
        if cycle % 2 == 0:  # else somewhere in start-up: opening the buffer, building the uplink
            agent.wait_running()
        time.sleep(rng.uniform(0.0, 0.8))  # somewhere in ingesting, cutting, sending, acking
        if cycle % 4 == 2:
            receiver.kill9()  # the receiver dies mid-stream too
            time.sleep(rng.uniform(0.05, 0.3))
            receiver.start()
        agent.kill9()
    agent.start()
    agent.wait_running()
    assert agent.stop() == 0  # SIGTERM: flush what is in memory, exit 0
    # Drain what is left with the source removed, so nothing new is made.
    agent.config.write_text(agent.config.read_text().replace(source(rate=100, series=3), ""))
    agent.start()
    wait_until(lambda: drained(agent), 60, "drain", agent.log_text, receiver.log_text)
    assert agent.stop() == 0
    committed = agent.status()["readings_committed"]  # over every run on this buffer file
    tops = assert_contiguous_once(receiver.readings("gw-e2e"), series=3)
    device = receiver.device("gw-e2e")
    assert device["forks"] == 0
    assert device["gaps"] == 0
    assert sum(tops.values()) == committed == device["readings"]


# The waits below are for volume, not speed: 12,000 readings take 7-12 s on a quiet machine and
# passed 30 s on a loaded one (a busy core and other suites), so they wait up to 90 s.


def test_outage_then_everything_arrives_once(tmp_path, receiver, agents):
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=source(rate=200, series=2, extra="max_readings = 600\n"),
        cloud={"batch_max_readings": 500},
    )
    agent.start()
    wait_until(
        lambda: receiver.device("gw-e2e").get("readings", 0) > 50,
        60,
        "first batches",
        agent.log_text,
    )
    receiver.stop()
    time.sleep(1.5)
    during = agent.status()
    assert during["uplink"]["state"] == "retrying"
    assert during["buffer"]["readings"] > 0
    receiver.start()
    wait_until(
        lambda: receiver.device("gw-e2e").get("readings") == 1200,
        90,
        "catch-up",
        agent.log_text,
        receiver.log_text,
    )
    assert agent.stop() == 0
    tops = assert_contiguous_once(receiver.readings("gw-e2e"), series=2)
    assert tops == {"test_counter_0": 600, "test_counter_1": 600}


def test_full_buffer_drops_oldest_and_the_cloud_sees_the_counts(tmp_path, receiver, agents):
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=source(rate=2000, series=3, extra="max_readings = 4000\n"),
        buffer={"max_mb": 0.1, "flush_interval_ms": 50, "flush_max_readings": 500},
        cloud={"batch_max_readings": 2000},
    )
    receiver.stop()  # enrolled, then the receiver goes away: everything piles up
    agent.start()
    wait_until(
        lambda: agent.status().get("readings_committed") == 12_000,
        90,
        "all readings committed",
        agent.log_text,
    )
    status = agent.status()
    dropped = status["drops"]["dropped_buffer_full"]["total"]
    assert dropped > 0
    assert status["buffer"]["readings"] == 12_000 - dropped
    receiver.start()
    wait_until(lambda: drained(agent), 90, "drain", agent.log_text, receiver.log_text)
    assert agent.stop() == 0
    device = receiver.device("gw-e2e")
    assert device["dropped_buffer_full"] == dropped  # reported, exactly, once
    assert device["readings"] + dropped == 12_000
    for metric, rows in receiver.readings("gw-e2e").items():
        values = [v for _t, v, _q in rows]
        # the oldest went: what is left of each series is its newest stretch, whole
        assert values == [float(v) for v in range(4001 - len(values), 4001)], metric
    log = whole_log(agent)
    # and the gateway's own log said so: the outage, the filling buffer, the drops with a count
    assert log.count("uplink down (ConnectError") == 1
    assert log.count("% full (") == 1
    counts = [
        int(line.split("buffer full: dropped ")[1].split()[0].replace(",", ""))
        for line in log.splitlines()
        if "buffer full: dropped " in line
    ]
    assert sum(counts) == dropped  # the log's counts add up to the drops, exactly
    assert log.count("uplink back after ") == 1


def test_outage_is_logged_once_and_uploads_resume_within_the_cap(tmp_path, receiver, agents):
    """Down long enough for an uncapped retry wait to grow past 10 s; back; the next batch is
    stored within retry_unavailable_max_s plus the time a loaded machine needs for one upload."""
    cap_s = 1.0
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=source(rate=50, series=1),
        cloud={
            "retry_initial_ms": 500,
            "retry_max_s": 300,
            "retry_unavailable_max_s": cap_s,
        },
    )
    agent.start()
    stored = lambda: receiver.device("gw-e2e").get("readings", 0)  # noqa: E731
    wait_until(lambda: stored() > 20, 20, "first batches", agent.log_text)
    receiver.stop()
    wait_until(lambda: "uplink down (" in agent.log_text(), 10, "the down line", agent.log_text)
    time.sleep(8)  # retries 1..6 or so: uncapped, the next wait would be drawn from 0-16 s or more
    before = stored()
    receiver.start()
    back = time.monotonic()
    wait_until(lambda: stored() > before, cap_s + 30, "uploads to resume", agent.log_text)
    resumed_s = time.monotonic() - back
    wait_until(lambda: "uplink back after" in agent.log_text(), 10, "the back line")
    assert agent.stop() == 0
    log = whole_log(agent)
    assert log.count("uplink down (") == 1  # not one line per retry
    assert log.count("uplink back after") == 1
    assert "still down" not in log  # the default is every 5 minutes
    assert resumed_s < cap_s + 5, f"resumed {resumed_s:.1f} s after the receiver was back"


def test_faults_on_the_wire_still_exactly_once(tmp_path, receiver, agents):
    with FaultProxy(receiver.port, seed=11) as proxy:
        # Gateways sign the URL they talk to, so the receiver's public URL is the proxy's.
        receiver.stop()
        receiver.public_url = f"http://127.0.0.1:{proxy.port}"
        receiver.start()
        proxy.faults = False  # enrolment is a one-shot operator step; the data path is tested
        agent = make_agent(
            tmp_path / "gw",
            receiver.public_url,
            receiver,
            agents,
            sources=source(rate=200, series=3, extra="max_readings = 400\n"),
            cloud={"batch_interval_ms": 30, "batch_max_readings": 150},
        )
        proxy.faults = True
        agent.start()
        wait_until(
            lambda: receiver.device("gw-e2e").get("readings") == 1200,
            60,
            "all readings through the faulty wire",
            agent.log_text,
            receiver.log_text,
        )
        assert agent.stop() == 0
        counts = dict(proxy.counts)
    assert counts["cuts"] > 0
    assert counts["resets"] > 0
    assert counts["delays"] > 0
    tops = assert_contiguous_once(receiver.readings("gw-e2e"), series=3)
    assert set(tops.values()) == {400}
    device = receiver.device("gw-e2e")
    assert device["forks"] == 0
    assert device["readings"] == 1200


def test_damaged_buffer_is_moved_aside_and_the_chain_continues(tmp_path, receiver, agents):
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=source(rate=100, series=1, extra="max_readings = 100\n"),
    )
    agent.start()
    wait_until(
        lambda: receiver.device("gw-e2e").get("readings") == 100, 20, "first run", agent.log_text
    )
    assert agent.stop() == 0
    head = receiver.device("gw-e2e")["head_seq"]
    buffer = tmp_path / "gw" / "data" / "buffer.db"
    buffer.write_bytes(b"\x00garbage\xff" * 1000)  # a card that lost the file
    agent.start()
    wait_until(
        lambda: receiver.device("gw-e2e").get("readings") == 200, 20, "second run", agent.log_text
    )
    assert agent.stop() == 0
    moved = [p for p in buffer.parent.glob("buffer.db.damaged-*") if p.suffix != ".journal"]
    assert moved[0].read_bytes().startswith(b"\x00garbage")
    device = receiver.device("gw-e2e")
    assert device["head_seq"] > head
    assert device["forks"] == 0
    assert device["gaps"] == 0
    assert "moved to" in agent.status()["buffer"]["damage"]


def test_revoked_device_stops_keeps_data_and_says_why(tmp_path, receiver, agents):
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources=source(rate=50, series=1),
        metrics='listen = "127.0.0.1:0"\n',
    )
    agent.start()
    wait_until(
        lambda: receiver.device("gw-e2e").get("readings", 0) > 10,
        20,
        "first batches",
        agent.log_text,
    )
    receiver.admin("POST", "/v1/admin/devices/gw-e2e/revoke")
    wait_until(
        lambda: agent.status()["uplink"]["state"].startswith("stopped: 403"),
        20,
        "the stop",
        agent.log_text,
    )
    before = agent.status()["buffer"]["readings"]
    time.sleep(0.5)
    after = agent.status()
    assert after["buffer"]["readings"] > before  # still buffering, nothing dropped
    assert after["uplink"]["state"] == (
        "stopped: 403 forbidden (device revoked or disabled; re-enrolment needed)"
    )
    assert agent.stop() == 0
