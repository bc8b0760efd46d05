"""Both sides' scrapes pass `promtool check metrics` (Prometheus's own linter: base units,
counter names, label shapes) and carry the build info and process families operators expect."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import wire.version
from agent.metrics import Metrics as AgentMetrics
from agent.metrics import source_counters
from agent.sources.modbus import ModbusStats, UnitStats
from tests.cloud.conftest import Receiver
from tests.conftest import service_missing

PROCESS_FAMILIES = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
)


def promtool(text: str) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        service_missing("promtool (Debian package prometheus)")
        return
    done = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _agent_scrape() -> str:
    m = AgentMetrics()
    m.clock_offset_ms = -1500
    m.retries = {"timeout": 2}
    m.last_ack_age_seconds = 1.5
    stats = ModbusStats(connects=1, units={3: UnitStats(polls=4, timeouts=1)})
    stats.units[3].exceptions[2] = 5
    m.sources = {"bus": source_counters(stats)}
    return m.render()


def test_the_agents_scrape_passes_promtool() -> None:
    text = _agent_scrape()
    promtool(text)
    assert "edge_agent_clock_offset_seconds -1.5\n" in text
    # the unit id and the exception code are labels of their own, not packed in the stat's name
    assert 'edge_agent_source_stats_total{source="bus",stat="units.timeouts",key="3"} 1' in text
    assert 'edge_agent_source_stats_total{source="bus",stat="units.exceptions",key="3/2"} 5' in text
    assert f'edge_agent_build_info{{version="{wire.version.release()}"}} 1' in text
    for family in PROCESS_FAMILIES:
        assert f"\n{family} " in text


async def test_the_receivers_scrape_passes_promtool(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-metrics")
    r = await receiver.send(gw, gw.next_batch())
    assert r.status_code == 200, r.text
    await receiver.client.get("/no/such/path")
    text = (await receiver.client.get("/metrics")).text
    promtool(text)
    assert f'tierless_build_info{{version="{wire.version.release()}"}} 1' in text
    for family in PROCESS_FAMILIES:
        assert f"\n{family} " in text


def test_a_workers_scrape_names_the_worker_and_passes_promtool() -> None:
    from cloud.receiver.metrics import Metrics

    text = Metrics(worker="2/3").render()
    promtool(text)
    assert 'tierless_worker_info{worker="2/3"} 1\n' in text
    assert "tierless_worker_info" not in Metrics().render()  # one process: no worker family


def test_process_metrics_are_this_process() -> None:
    import os
    import resource
    import time

    text = _agent_scrape()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("process_")
    }
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert 0 < values["process_resident_memory_bytes"] <= rss_kib * 1024 * 2
    assert values["process_open_fds"] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=3)
    assert 0 < values["process_start_time_seconds"] <= time.time()
    assert values["process_cpu_seconds_total"] > 0
