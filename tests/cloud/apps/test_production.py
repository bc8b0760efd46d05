"""Production besides tickets: production counters (medium `product`, a mass unit) and operator
entries, and the precedence counters > tickets > entries (cloud.apps.production)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from cloud.apps import efficiency, production
from cloud.apps.intensity import PlantConfig, ProcessConfig, Timeline
from cloud.storage.reads import SeriesInfo
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.conftest import Receiver
from wire.models import Event, SeriesKey

HOUR = 3_600_000
MIN = 60_000
DAY0 = 1_789_948_800_000  # 2026-09-21 00:00 UTC
UTC = ZoneInfo("UTC")


def info(sid: int, metric: str, unit: str, process: str, medium: str) -> SeriesInfo:
    return SeriesInfo(sid, "gw", metric, unit, "plant", "hall", process, medium)


def test_which_series_are_production_counters() -> None:
    media = frozenset({"product"})
    assert production.tonnes_factor(info(1, "belt_total", "t", "kiln", "product"), media) == 1.0
    assert production.tonnes_factor(info(1, "belt_total", "kg", "kiln", "product"), media) == 0.001
    # a per-interval amount, another medium, a unit that is no mass: not production counters
    assert production.tonnes_factor(info(1, "belt_today", "t", "kiln", "product"), media) is None
    assert production.tonnes_factor(info(1, "belt_total", "t", "kiln", "material"), media) is None
    assert production.tonnes_factor(info(1, "belt_total", "kW.h", "kiln", "product"), media) is None
    assert production.tonnes_factor(info(1, "belt_rate", "t", "kiln", "product"), media) is None


def test_an_entry_counts_only_where_nothing_measured_covers_it() -> None:
    tl = Timeline.of(0, 4 * HOUR, 4 * HOUR, UTC)
    tonnes = {"kiln": [0.0, 0.0, 3.0, 0.0], "mill": [0.0] * 4}
    entries = [
        production.Entry(1, "kiln", 0, 2 * HOUR, 8.0),  # hours 0-1: nothing measured -> counts
        production.Entry(2, "kiln", 2 * HOUR + 1, 3 * HOUR, 9.0),  # hour 2 has a ticket
        production.Entry(3, "kiln", 3 * HOUR + 30 * MIN, 5 * HOUR, 6.0),  # half outside window
        production.Entry(4, "press", 0, HOUR, 1.0),  # no such process
        production.Entry(5, "mill", HOUR, HOUR, 1.0),  # empty window
    ]
    assert production.add_entries(tonnes, entries, tl) == [1, 3]
    assert tonnes["kiln"] == [4.0, 4.0, 3.0, pytest.approx(2.0)]
    assert tonnes["mill"] == [0.0] * 4


async def test_a_production_counter_stored_through_the_receiver(receiver: Receiver) -> None:
    """A belt scale's totaliser in kg is the kiln's production (its tickets are then not counted,
    the mill's are); kWh per tonne follows from it."""
    receiver.clock.ms = DAY0 + 3 * HOUR
    gw = await receiver.enrolled("gw-kiln")
    belt = SeriesKey("belt_total", "kg", "plant", "hall", "kiln", "product")
    energy = SeriesKey("energy_import", "kW.h", "plant", "hall", "kiln", "electricity")
    t = [DAY0 + i * 5 * MIN for i in range(37)]  # 00:00 .. 03:00, every 5 minutes
    # 12 t an hour (1 t every 5 minutes), the totaliser starting at 500 t; 600 kWh an hour
    belt_rows = [(ts, 500_000.0 + 1000.0 * i) for i, ts in enumerate(t)]
    energy_rows = [(ts, 10_000.0 + 50.0 * i) for i, ts in enumerate(t)]
    tickets = [
        Event(
            "weighbridge_ticket",
            DAY0 + 10 * MIN,
            (("process", "kiln"), ("net_kg", 30_000.0), ("direction", "out"), ("ticket", 1)),
        ),
        Event(
            "weighbridge_ticket",
            DAY0 + 20 * MIN,
            (("process", "mill"), ("net_kg", 7_000.0), ("direction", "out"), ("ticket", 2)),
        ),
    ]
    data = [series_data(belt, belt_rows), series_data(energy, energy_rows)]
    r = await receiver.send(gw, freeze(gw, data, tickets))
    assert r.status_code == 200, r.text

    config = PlantConfig((ProcessConfig("kiln"), ProcessConfig("mill")))
    report = await efficiency.load(
        receiver.store, config, from_ms=DAY0, to_ms=DAY0 + 3 * HOUR, until_ms=DAY0 + 3 * HOUR
    )
    assert report.tonnes == {"kiln": pytest.approx(36.0), "mill": pytest.approx(7.0)}
    assert report.sources == {
        "kiln": {"counters": pytest.approx(36.0)},
        "mill": {"tickets": pytest.approx(7.0)},
    }
    assert await efficiency.named(receiver.store, DAY0, DAY0 + 3 * HOUR) == ["kiln", "mill"]
