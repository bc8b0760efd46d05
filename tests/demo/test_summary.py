"""The demo's verdict catches what it claims to: loss, duplicates, made-up readings."""

from __future__ import annotations

from demo import drain, summary
from demo.cloud import Point, ReceiverApi

GOOD, BAD = 0, 2


def pts(*ts: int, value: float = 1.0, quality: int = GOOD) -> list[Point]:
    return [Point(t, value, quality) for t in ts]


def test_meter_counts_good_readings_per_metric_and_ignores_bad_markers() -> None:
    served = {"voltage_l1": 3, "energy_import": 3}
    stored = {
        "voltage_l1": pts(1, 2, 3) + pts(4, 5, quality=BAD),
        "energy_import": pts(1, 2, 3),
    }
    r = summary.meter(served, stored)
    assert (r.produced, r.stored, r.missing, r.duplicated, r.unexpected) == (6, 6, 0, 0, 0)
    assert r.ok
    assert "2 BAD markers" in r.notes[0]


def test_meter_loss_duplicate_and_extra() -> None:
    served = {"a": 3, "b": 2, "c": 1}
    stored = {"a": pts(1, 2), "b": pts(1, 1, 2), "c": pts(1, 2)}
    r = summary.meter(served, stored)
    assert (r.missing, r.duplicated, r.unexpected) == (1, 1, 1)
    assert not r.ok


def test_mcu_matches_each_stored_value_to_its_seq() -> None:
    taken = [[1, 0, 0, 1000.0], [1, 1, 1, 1100.25], [1, 2, 0, 1000.5], [1, 3, 1, 1100.75]]
    channels = {0: "air", 1: "water"}
    ok = summary.mcu(
        taken,
        channels,
        {
            "air": pts(1, value=1000.0) + pts(2, value=1000.5),
            "water": pts(1, value=1100.25) + pts(2, value=1100.75),
        },
    )
    assert ok.ok
    assert ok.produced_as == "readings taken, seq 0..3"
    bad = summary.mcu(
        taken,
        channels,
        {
            "air": pts(1, value=1000.0) + pts(1, value=1000.0) + pts(3, value=999.0),
            "water": pts(1, value=1100.25),
        },
    )
    assert (bad.missing, bad.duplicated, bad.unexpected) == (2, 1, 1)
    assert "1/2, 1/3" in bad.notes[0]


def test_weighbridge_needs_one_event_and_one_reading_per_ticket() -> None:
    printed = [[1001, "SAND", "L1", 20000], [1002, "GRAVEL", "L2", 21000]]
    events = [{"attrs": {"ticket": 1001}}, {"attrs": {"ticket": 1002}}]
    net = pts(10, value=20000.0) + pts(20, value=21000.0)
    assert summary.weighbridge(printed, events, net).ok
    r = summary.weighbridge(printed, events[:1] + events[:1], net[:1])
    assert (r.produced, r.missing, r.duplicated) == (4, 2, 1)


def test_mqtt_identity_is_metric_and_payload_time() -> None:
    acked = [["s.t", 1, 20.0], ["s.h", 1, 40.0], ["s.t", 2, 20.5], ["s.h", 2, 41.0]]
    assert summary.mqtt(acked, {"s.t": pts(1, 2), "s.h": pts(1, 2)}).ok
    r = summary.mqtt(acked, {"s.t": pts(1, 2, 2, 3), "s.h": pts(1)})
    assert (r.missing, r.duplicated, r.unexpected) == (1, 1, 1)


def test_verdict_fails_on_chain_gaps_and_when_not_drained() -> None:
    device = summary.DeviceResult("mcu", 2, 2)
    assert summary.Verdict([device], {}, {"gaps": 0}, drained=True, seconds=5).ok
    assert not summary.Verdict([device], {}, {"gaps": 1}, drained=True, seconds=5).ok
    undrained = summary.Verdict([device], {}, {}, drained=False, seconds=5)
    assert not undrained.ok
    assert undrained.lines()[-1].startswith("result: not checked")
    idle = summary.Verdict([summary.DeviceResult("mcu", 0, 0)], {}, {}, drained=True, seconds=5)
    assert not idle.ok


def test_pages_by_time_keep_repeated_timestamps() -> None:
    rows = [{"ts_ms": t} for t in (1, 2, 2, 2, 3, 3, 4, 4, 4, 5)]

    def fetch(start: int) -> list[dict[str, int]]:
        return [r for r in rows if r["ts_ms"] >= start][:4]  # a receiver capping pages at 4

    assert ReceiverApi._paged(fetch, 0) == rows


def test_drain_reads_the_agents_metrics() -> None:
    text = """# HELP x
edge_agent_readings_in_total 10
edge_agent_readings_committed_total 8
edge_agent_readings_dropped_total{reason="buffer_full"} 2
edge_agent_events_in_total 1
edge_agent_events_committed_total 1
edge_agent_source_stats_total{source="bus",stat="units.ok",key="1"} 5
edge_agent_source_stats_total{source="wb",stat="events"} 1
"""
    samples = drain.parse_metrics(text)
    status = {"meter": {"requests": 5}, "weighbridge": {"tickets": 1}}
    sources = {"meter": "bus", "weighbridge": "wb"}
    assert drain.handed_over(status, samples, sources) is True
    assert drain.handed_over({**status, "meter": {"requests": 6}}, samples, sources) is False
    assert drain.handed_over(status, {}, sources) is None


def test_drain_ignores_readings_taken_after_the_stop() -> None:
    held = drain.Backlog(readings=3, events=0, oldest_age_s=0.5)
    assert drain.uploaded(held, stop_ms=10_000, asked_ms=11_000)  # oldest taken at ~10.5 s
    assert not drain.uploaded(held, stop_ms=10_000, asked_ms=10_400)
    assert not drain.uploaded(drain.Backlog(0, 1, None), stop_ms=0, asked_ms=1)
    assert drain.uploaded(drain.Backlog(0, 0, None), stop_ms=0, asked_ms=1)
