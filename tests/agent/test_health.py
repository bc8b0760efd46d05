"""The agent's health report pieces: source states from gap events, error counts, the loop."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from agent.health import (
    HealthStats,
    SourceStates,
    WatchedSink,
    config_version,
    error_counts,
    report_loop,
)
from agent.ingest import SourceSink
from agent.sources.gaps import Gaps
from tests.agent.sources.conftest import Recorder
from wire.models import Event

T0 = 1_790_000_000_000


class Stamper:
    def __init__(self) -> None:
        self.ms = T0

    def now(self) -> tuple[int, int]:
        return self.ms, 0


def test_gap_events_through_the_sink_are_the_source_state() -> None:
    states = SourceStates(["bus", "idle"])
    recorder = Recorder()
    sink = WatchedSink(cast(SourceSink, recorder), "bus", states)
    clock = Stamper()
    gaps = Gaps("bus", clock=clock, logger=logging.getLogger("test"))
    assert [s.view({}).state for s in states.sources.values()] == ["up", "up"]

    gaps.down(sink, "unit_down", "timeout", part="meter-2")
    view = states.sources["bus"].view({})
    assert (view.state, view.parts_down, view.outages) == ("up", ["meter-2"], 1)
    assert states.changed.is_set()

    clock.ms = T0 + 5000
    gaps.down(sink, "link_lost", "connection refused")
    gaps.down(sink, "link_lost", "again")  # no transition: not counted twice
    view = states.sources["bus"].view({"timeouts": 3})
    assert view.state == "down"
    assert (view.down_since_ms, view.reason, view.detail) == (
        T0 + 5000,
        "link_lost",
        "connection refused",
    )
    assert view.outages == 2
    assert view.errors == {"timeouts": 3}

    gaps.up(sink)
    gaps.up(sink, part="meter-2")
    view = states.sources["bus"].view({})
    assert (view.state, view.parts_down, view.down_since_ms) == ("up", [], None)
    assert states.sources["idle"].view({}).outages == 0
    # everything still reached the real sink
    assert [e.kind for e in recorder.events] == [
        "source_down",
        "source_down",
        "source_up",
        "source_up",
    ]


def test_the_detail_of_a_down_source_is_kept() -> None:
    states = SourceStates(["scale"])
    attrs = (("source", "scale"), ("reason", "port_lost"), ("detail", "/dev/ttyUSB0: gone"))
    states.observe("scale", Event("source_down", T0, attrs))
    states.observe("scale", Event("weighbridge_ticket", T0, ()))  # not a gap event
    view = states.sources["scale"].view({})
    assert (view.state, view.detail) == ("down", "/dev/ttyUSB0: gone")


def test_error_counts_keep_only_non_zero_error_counters() -> None:
    counters = {
        ("readings", ""): 10,
        ("timeouts", ""): 2,
        ("bad_frames", ""): 0,
        ("port.reopens", ""): 1,
        ("answers", ""): 5,
        ("units.timeouts", "3"): 4,
        ("units.polls", "3"): 9,
    }
    assert error_counts(counters) == {"port.reopens": 1, "timeouts": 2, "units.timeouts[3]": 4}


def test_config_version_is_a_short_hash_of_the_file() -> None:
    assert config_version(b"a") == config_version(b"a")
    assert config_version(b"a") != config_version(b"b")
    assert len(config_version(b"a")) == 16


async def test_a_failed_report_is_counted_not_queued_and_a_change_sends_soon() -> None:
    calls: list[int] = []
    called = asyncio.Event()

    async def send() -> None:
        calls.append(len(calls))
        called.set()
        if len(calls) <= 2:
            raise OSError("receiver away")

    async def next_call() -> None:
        await called.wait()
        called.clear()

    changed = asyncio.Event()
    stats = HealthStats()
    task = asyncio.create_task(report_loop(send, changed, interval_s=3600, stats=stats))
    try:
        async with asyncio.timeout(30):
            await next_call()
            await asyncio.sleep(1.5)  # past the minimum gap: nothing is retried on its own
            assert len(calls) == 1
            changed.set()  # a state change: a report within about a second
            await next_call()
            changed.set()
            await next_call()
            for _ in range(1000):  # the loop counts the success after send returns
                if stats.sent:
                    break
                await asyncio.sleep(0.01)
        assert len(calls) == 3
        assert (stats.failed, stats.sent) == (2, 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_watched_sink_passes_a_source_state_through() -> None:
    """MQTT commits its redelivery record through the sink; hidden by this wrapper, the record
    stayed in memory and a kill -9 duplicated acknowledged messages (found by the crash test)."""
    from agent.sources.mqtt.source import StateSink

    calls: list[str] = []

    class Tracking(Recorder):
        def track_state(self, capture):
            calls.append("track")
            return capture()

        def state_changed(self):
            calls.append("changed")

    sink = WatchedSink(cast(SourceSink, Tracking()), "mqtt", SourceStates(["mqtt"]))
    assert isinstance(sink, StateSink)
    assert sink.track_state(lambda: b"record") == b"record"
    sink.state_changed()
    assert calls == ["track", "changed"]
