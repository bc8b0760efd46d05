"""The whole agent in-process (TaskGroup, flusher, sync, metrics) against a fake receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3

import httpx
import pytest

from agent.buffer import open_buffer
from agent.config import load_config
from agent.runtime import Agent, RuntimeDeps
from firmware_bridge.ascii_protocol import AnswerParser, AsciiConfig, compile_spec
from firmware_bridge.errors import UnexpectedUnitError
from firmware_bridge.port_config import PortConfig
from tests.agent.fakes import SERVER_MS, FakeReceiver
from tests.agent.helpers import damage_outbox_body, write_config, write_key
from wire.codec import decode_batch
from wire.models import TIME_UNTRUSTED, ClockReport, Event, SeriesKey

T_EVENT = 1_800_000_000_000


async def wait_for(condition, limit_s=10.0):
    # Polling: the condition is on objects other tasks and threads change.
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.fixture
def setup(tmp_path):
    key = write_key(tmp_path / "keys" / "device.key")
    receiver = FakeReceiver(key)

    def make(**overrides):
        path = write_config(tmp_path, url="https://ingest.test", **overrides)
        return load_config(path)

    return receiver, make


async def run_agent(config, receiver, **deps):
    stop = asyncio.Event()
    agent = Agent(
        config,
        RuntimeDeps(transport=receiver.transport(), stop=stop, handle_signals=False, **deps),
    )
    task = asyncio.create_task(agent.run(), name="agent")
    return agent, stop, task


async def test_readings_flow_to_the_receiver_and_stop_is_clean(setup):
    receiver, make = setup
    config = make(
        sources='[[sources]]\ntype = "test"\nrate_hz = 200\nseries = 3\nmax_readings = 60\n',
        metrics='listen = "127.0.0.1:0"\n',
    )
    agent, stop, task = await run_agent(config, receiver)
    await wait_for(lambda: len(receiver.values()) == 180)
    reader, writer = await asyncio.open_connection("127.0.0.1", agent.metrics_port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    scrape = (await reader.read()).decode()
    writer.close()
    await writer.wait_closed()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert "edge_agent_readings_committed_total 180" in scrape
    assert 'edge_agent_uplink_state{state="idle"} 1' in scrape or "sending" in scrape
    assert "edge_agent_backlog_readings" in scrape
    per_series: dict[str, list[float]] = {}
    for seq in sorted(receiver.batches):
        for r in decode_batch(receiver.batches[seq]).readings():
            per_series.setdefault(r.series.metric, []).append(r.value)
    assert {k: v for k, v in per_series.items()} == {
        f"test_counter_{i}": [float(n) for n in range(1, 61)] for i in range(3)
    }


async def test_untrusted_clock_is_corrected_by_the_receivers_time(setup):
    receiver, make = setup
    config = make(
        clock='sync_check = "receiver_only"\n',
        sources='[[sources]]\ntype = "test"\nrate_hz = 100\nseries = 1\nmax_readings = 20\n',
    )
    agent, stop, task = await run_agent(config, receiver)
    await wait_for(lambda: len(receiver.values()) == 20)
    stop.set()
    await asyncio.wait_for(task, 5)
    readings = [
        r for s in sorted(receiver.batches) for r in decode_batch(receiver.batches[s]).readings()
    ]
    # The fake receiver says it is SERVER_MS; every reading is stamped on its time, none flagged.
    assert all(abs(r.ts_ms - SERVER_MS) < 60_000 for r in readings)
    assert not any(r.quality & TIME_UNTRUSTED for r in readings)
    assert decode_batch(receiver.batches[max(receiver.batches)]).clock.state == 1


async def test_stop_flushes_what_is_in_memory(setup, tmp_path):
    receiver, make = setup
    config = make(
        cloud={"batch_max_readings": 100000},
        buffer={"flush_max_readings": 1000000, "flush_interval_ms": 60000},
        sources='[[sources]]\ntype = "test"\nrate_hz = 1000\nseries = 2\nmax_readings = 300\n',
    )
    agent, stop, task = await run_agent(config, receiver)
    await wait_for(lambda: hasattr(agent, "ingest") and agent.ingest.readings_in == 600)
    stop.set()
    await asyncio.wait_for(task, 5)
    import sqlite3

    conn = sqlite3.connect(config.buffer.path)
    held = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
    held += conn.execute("SELECT coalesce(sum(readings), 0) FROM outbox").fetchone()[0]
    conn.close()
    assert held + len(receiver.values()) == 600


async def test_a_failing_receiver_never_loses_data(setup):
    receiver, make = setup
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] % 3:  # two of three requests die on the wire
            raise httpx.ReadError("reset", request=request)
        return receiver.handle(request)

    config = make(
        sources='[[sources]]\ntype = "test"\nrate_hz = 200\nseries = 2\nmax_readings = 100\n'
    )
    stop = asyncio.Event()
    agent = Agent(
        config,
        RuntimeDeps(transport=httpx.MockTransport(flaky), stop=stop, handle_signals=False),
    )
    task = asyncio.create_task(agent.run(), name="agent")
    await wait_for(lambda: len(receiver.values()) == 200, 15)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(receiver.values()) == sorted([float(n) for n in range(1, 101)] * 2)
    assert agent.metrics.retries["transport"] > 0


@dataclasses.dataclass
class _PortStats:
    opens: int = 2


@dataclasses.dataclass
class _Stats:
    port: _PortStats = dataclasses.field(default_factory=_PortStats)
    events: int = 0
    exceptions: dict[int, int] = dataclasses.field(default_factory=lambda: {2: 5})
    down_until: float = 12.5  # not a counter: left out
    healthy: bool = True  # not a counter either


class TicketSource:
    """Hands over readings and events like the ASCII weighbridge, with stats of its own."""

    name = 'scale "A"'

    def __init__(self) -> None:
        self.stats = _Stats()

    async def run(self, sink) -> None:
        sid = sink.series_id(SeriesKey("net_mass", "kg"))
        for n in range(3):
            sink.add(sid, 100.0 + n)
            sink.add_event(Event("weighbridge_ticket", T_EVENT + n, (("lot", f"L-{n}"),)))
            self.stats.events += 1


async def test_events_travel_with_readings_and_source_stats_are_metrics(setup):
    receiver, make = setup
    config = make(sources="", metrics='listen = "127.0.0.1:0"\n')
    source = TicketSource()
    agent, stop, task = await run_agent(config, receiver, sources=[source])
    await wait_for(lambda: sum(len(decode_batch(b).events) for b in receiver.batches.values()) == 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", agent.metrics_port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    scrape = (await reader.read()).decode()
    writer.close()
    await writer.wait_closed()
    stop.set()
    await asyncio.wait_for(task, 5)
    events = [e for s in sorted(receiver.batches) for e in decode_batch(receiver.batches[s]).events]
    assert [(e.kind, e.ts_ms, e.attrs) for e in events] == [
        ("weighbridge_ticket", T_EVENT + n, (("lot", f"L-{n}"),)) for n in range(3)
    ]
    assert sorted(receiver.values()) == [100.0, 101.0, 102.0]
    assert "edge_agent_events_committed_total 3" in scrape
    label = 'source="scale \\"A\\""'
    assert f'edge_agent_source_stats_total{{{label},stat="events"}} 3' in scrape
    assert f'edge_agent_source_stats_total{{{label},stat="port.opens"}} 2' in scrape
    assert f'edge_agent_source_stats_total{{{label},stat="exceptions",key="2"}} 5' in scrape
    assert "down_until" not in scrape
    assert "healthy" not in scrape


async def _scrape(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    scrape = (await reader.read()).decode()
    writer.close()
    await writer.wait_closed()
    return scrape


class NoisyScale:
    """An MT-SICS scale streaming through the real answer parser; one line carries a NUL byte
    inside the unit, as a noisy serial line delivered it."""

    name = "scale"

    def __init__(self) -> None:
        config = AsciiConfig(
            name="scale", port=PortConfig(path="/dev/null"), preset="mt-sics", mode="streaming"
        )
        self.parser = AnswerParser(compile_spec(config))

    async def run(self, sink) -> None:
        for line in ("S S     100.5 kg", "S D  00  11835\x00kg", "S S     101.5 kg"):
            try:
                answer = self.parser.parse(line)
            except UnexpectedUnitError:
                # Since issue 13 the preset refuses a unit the balance cannot send. The door
                # must still refuse the key it used to make of this line (weight "00", status D).
                sink.add(sink.series_id(SeriesKey("weight", "11835\x00kg")), 0.0, 1)
                continue
            for spec, value, unit in answer.values:
                key = SeriesKey(spec.metric, unit)
                sink.add(sink.series_id(key), value if value is not None else 0.0, answer.quality)


async def test_a_control_byte_from_a_device_cannot_stop_the_agent(setup):
    receiver, make = setup
    config = make(sources="", metrics='listen = "127.0.0.1:0"\n')
    agent, stop, task = await run_agent(config, receiver, sources=[NoisyScale()])

    def rejected() -> int:
        return sum(decode_batch(b).counters.rejected_invalid for b in receiver.batches.values())

    # Before: the bad reading was committed, the cut failed ("series[1].unit: contains control
    # characters") and the agent stopped (exit 4), and again on every restart.
    await wait_for(lambda: task.done() or (len(receiver.values()) == 2 and rejected() == 1))
    assert not task.done(), task.exception()
    scrape = await _scrape(agent.metrics_port)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(receiver.values()) == [100.5, 101.5]
    assert 'edge_agent_rejected_total{reason="control_characters"} 1' in scrape
    conn = sqlite3.connect(config.buffer.path)
    units = [u for (u,) in conn.execute("SELECT unit FROM series")]
    conn.close()
    assert units == ["kg"]  # the bad series never reached the buffer


async def test_a_buffer_already_holding_a_bad_row_still_flows(setup):
    receiver, make = setup
    config = make(sources="")
    old = open_buffer(config.buffer.path, max_bytes=1 << 26, kernel_boot_id="k")
    bad, good = SeriesKey("weight", "11835\x00kg"), SeriesKey("weight", "kg")
    old.commit(
        [(1, T_EVENT, 1.0, 0), (2, T_EVENT, 11835.0, 1), (1, T_EVENT + 1, 2.0, 0)],
        new_series=[(1, good), (2, bad)],
    )
    old.close()
    agent, stop, task = await run_agent(config, receiver, sources=[NoisyScale()])

    def rejected() -> int:
        return sum(decode_batch(b).counters.rejected_invalid for b in receiver.batches.values())

    await wait_for(lambda: task.done() or (len(receiver.values()) == 4 and rejected() == 2))
    assert not task.done(), task.exception()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(receiver.values()) == [1.0, 2.0, 100.5, 101.5]
    assert agent.worker.buffer.meta["total_rejected_by_control_characters"] == 2


async def test_a_damaged_frozen_batch_stops_uploads_not_the_agent(setup, caplog):
    """One flipped byte inside a frozen batch's stored body (damage `quick_check` does not
    see): uploads stop with the file and batch named, nothing is sent in its place, and the
    sources go on collecting into the buffer (the agent does not exit into a restart loop)."""
    receiver, make = setup
    caplog.set_level(logging.INFO)
    config = make(cloud={"refused_recheck_s": 0.2})
    old = open_buffer(config.buffer.path, max_bytes=1 << 26, kernel_boot_id="k")
    old.adopt_head(0, bytes(32))
    old.commit(
        [(1, T_EVENT + i, float(i), 0) for i in range(500)], new_series=[(1, SeriesKey("m"))]
    )
    old.cut(
        device_id="gw-test", boot_id="k", clock=ClockReport(), max_readings=500, max_bytes=1 << 20
    )
    old.close()
    damage_outbox_body(config.buffer.path)
    agent, stop, task = await run_agent(config, receiver)
    await wait_for(
        lambda: (
            task.done()
            or (
                getattr(agent, "syncer", None) is not None
                and agent.syncer.state.startswith("stopped: ")
                and agent.metrics.readings_committed > 20
            )
        )
    )
    assert not task.done(), task.exception()
    assert "batch 1: stored body does not inflate" in agent.syncer.state
    assert receiver.batches == {}  # not sent, nothing sent in its place
    stop.set()
    await asyncio.wait_for(task, 5)
    assert "uploads stopped" in caplog.text


async def test_outage_and_full_buffer_are_in_the_log_and_the_metrics(setup, caplog):
    """The receiver is away from the start and the buffer overflows: the log says so once each
    (down; filling; dropping, with the count), the gauges agree; then the receiver is back."""
    receiver, make = setup
    caplog.set_level(logging.INFO)
    away = {"yes": True}

    def transport(request):
        if away["yes"]:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return receiver.handle(request)

    config = make(
        sources='[[sources]]\ntype = "test"\nrate_hz = 2000\nseries = 3\nmax_readings = 4000\n',
        buffer={"max_mb": 0.1, "flush_interval_ms": 50, "flush_max_readings": 500},
        cloud={"batch_max_readings": 2000},
        metrics='listen = "127.0.0.1:0"\n',
    )
    stop = asyncio.Event()
    agent = Agent(
        config,
        RuntimeDeps(transport=httpx.MockTransport(transport), stop=stop, handle_signals=False),
    )
    task = asyncio.create_task(agent.run(), name="agent")
    await wait_for(lambda: agent.metrics.readings_committed == 12_000, 30)
    during = await _scrape(agent.metrics_port)
    dropped = agent.metrics.dropped["buffer_full"]
    assert dropped > 0
    away["yes"] = False
    await wait_for(lambda: len(receiver.values()) == 12_000 - dropped, 30)
    await wait_for(lambda: agent.pressure.fill < 0.7)  # a flusher turn after the last ack
    after = await _scrape(agent.metrics_port)
    stop.set()
    await asyncio.wait_for(task, 5)

    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name in ("agent.outage", "agent.pressure")
    ]
    levels = [level for level, _ in lines]
    texts = [text for _, text in lines]
    assert texts[0].startswith("uplink down (ConnectError: [Errno 111] Connection refused): ")
    full = [t for t in texts if " % full (" in t]
    assert len(full) == 1  # once per crossing, however many commits
    drops = [t for t in texts if t.startswith("buffer full: dropped ")]
    # the first at once; the rest (well within the minute) when the fill falls below 70 %
    assert len(drops) == 2
    counts = [int(t.split()[3].replace(",", "")) for t in drops]
    assert counts[0] > 0
    assert sum(counts) == dropped  # every drop in the log, exactly
    assert f"({dropped:,} since start)" in drops[1]
    assert "to stay within 102 KB" in drops[0]
    back = texts.index(next(t for t in texts if t.startswith("uplink back after ")))
    assert texts[back + 1 :] == [drops[1], texts[-1]]
    assert texts[-1].startswith("buffer down to ")
    assert levels.count("ERROR") == 2
    assert "edge_agent_uplink_up 0" in during
    assert "\nedge_agent_last_ack_age_seconds " not in during  # never acknowledged: no sample
    fill = float(during.split("\nedge_agent_buffer_fill_ratio ")[1].split()[0])
    assert 0.8 <= fill <= 1.0
    assert "edge_agent_uplink_up 1" in after
    age = float(after.split("\nedge_agent_last_ack_age_seconds ")[1].split()[0])
    assert 0 <= age < 30


async def test_readings_buffered_under_one_config_are_sent_naming_it_after_a_restart(setup):
    receiver, make = setup
    config = make(
        sources='[[sources]]\ntype = "test"\nrate_hz = 200\nseries = 1\nmax_readings = 40\n'
    )

    def down(request):
        raise httpx.ConnectError("down", request=request)

    stop = asyncio.Event()
    deps = RuntimeDeps(transport=httpx.MockTransport(down), stop=stop, handle_signals=False)
    first = Agent(config, deps, config_version="aaaa")
    task = asyncio.create_task(first.run(), name="agent-a")
    await wait_for(lambda: hasattr(first, "ingest") and first.ingest.readings_in == 40)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert receiver.batches == {}

    stop = asyncio.Event()
    deps = RuntimeDeps(transport=receiver.transport(), stop=stop, handle_signals=False)
    second = Agent(config, deps, config_version="bbbb")
    task = asyncio.create_task(second.run(), name="agent-b")
    await wait_for(lambda: len(receiver.values()) == 80, 15)
    stop.set()
    await asyncio.wait_for(task, 5)
    by_version: dict[str, list[float]] = {}
    for seq in sorted(receiver.batches):
        batch = decode_batch(receiver.batches[seq])
        by_version.setdefault(batch.config_version, []).extend(r.value for r in batch.readings())
    # the test counter carries on from its last buffered value
    assert by_version == {
        "aaaa": [float(n) for n in range(1, 41)],
        "bbbb": [float(n) for n in range(41, 81)],
    }
