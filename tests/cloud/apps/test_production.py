"""Production besides tickets: production counters (medium `product`, a mass unit) and operator
entries, and the precedence counters > tickets > entries (cloud.apps.production)."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

import msgspec
import pytest

from cloud.apps import efficiency, production
from cloud.apps.intensity import PlantConfig, ProcessConfig, Timeline
from cloud.receiver.audit import AUDIT_LOGGER
from cloud.storage.reads import SeriesInfo
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.conftest import READ_TOKEN, Receiver
from wire.efficiency import EFFICIENCY_PATH, Efficiency
from wire.models import Event, SeriesKey
from wire.production import PRODUCTION_PATH, ProductionList, ProductionView

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


async def test_operator_entries_through_the_api(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Entered with the admin token, listed with the read token, corrected by superseding; the
    efficiency figures count an entry where no ticket covers its window, and only the
    correction."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    receiver.clock.ms = DAY0 + 6 * HOUR
    body = {
        "process": "kiln",
        "from_ms": DAY0,
        "to_ms": DAY0 + 2 * HOUR,
        "tonnes": 20.0,
        "actor": "ana",
        "note": "clipboard",
    }
    r = await receiver.admin("POST", PRODUCTION_PATH, json=body)
    assert r.status_code == 201, r.text
    first = msgspec.json.decode(r.content, type=ProductionView)
    assert (first.process, first.tonnes, first.entered_ms, first.superseded_by) == (
        "kiln",
        20.0,
        DAY0 + 6 * HOUR,
        None,
    )
    audit = [x.getMessage() for x in caplog.records if x.name == AUDIT_LOGGER]
    assert (
        f"audit: production enter entry_id={first.entry_id} process='kiln' tonnes=20.0" in audit[-1]
    )
    assert "actor='ana'" in audit[-1]

    # a ticket covers the mill's window: its entry is not counted
    gw = await receiver.enrolled("scale")
    ticket = Event(
        "weighbridge_ticket",
        DAY0 + 3 * HOUR + 10 * MIN,
        (("process", "mill"), ("net_kg", 5_000.0), ("direction", "out")),
    )
    assert (await receiver.send(gw, freeze(gw, [], [ticket]))).status_code == 200
    mill = {**body, "process": "mill", "from_ms": DAY0 + 3 * HOUR, "to_ms": DAY0 + 4 * HOUR}
    assert (await receiver.admin("POST", PRODUCTION_PATH, json=mill)).status_code == 201

    fix = {**body, "tonnes": 24.0, "note": "recount", "supersedes": first.entry_id}
    r = await receiver.admin("POST", PRODUCTION_PATH, json=fix)
    assert r.status_code == 201, r.text
    correction = msgspec.json.decode(r.content, type=ProductionView)
    assert correction.supersedes == first.entry_id
    r = await receiver.admin("POST", PRODUCTION_PATH, json=fix)
    assert r.status_code == 409, r.text

    read = {"authorization": f"Bearer {READ_TOKEN}"}
    r = await receiver.client.get(PRODUCTION_PATH, headers=read)
    assert r.status_code == 200, r.text
    listed = msgspec.json.decode(r.content, type=ProductionList).entries
    assert [(e.process, e.tonnes, e.superseded_by) for e in listed] == [
        ("kiln", 20.0, correction.entry_id),
        ("mill", 20.0, None),
        ("kiln", 24.0, None),
    ]
    r = await receiver.client.get(
        PRODUCTION_PATH, params={"process": "mill", "from_ms": DAY0 + 2 * HOUR}, headers=read
    )
    assert [e.process for e in msgspec.json.decode(r.content, type=ProductionList).entries] == [
        "mill"
    ]

    r = await receiver.client.get(
        EFFICIENCY_PATH, params={"from_ms": DAY0, "to_ms": DAY0 + 6 * HOUR}, headers=read
    )
    assert r.status_code == 200, r.text
    eff = msgspec.json.decode(r.content, type=Efficiency)
    assert eff.processes == ["kiln", "mill"]
    assert eff.tonnes == {"kiln": pytest.approx(24.0), "mill": pytest.approx(5.0)}
    assert eff.sources == {
        "kiln": {"tickets": 0.0, "entries": pytest.approx(24.0)},
        "mill": {"tickets": pytest.approx(5.0)},
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tonnes": -1.0}, "$.tonnes"),
        ({"tonnes": "many"}, "$.tonnes"),
        ({"to_ms": DAY0}, "$.to_ms"),
        ({"process": " "}, "$.process"),
        ({"actor": ""}, "$.actor"),
        ({"colour": "red"}, "colour"),
        ({"supersedes": 0}, "$.supersedes"),
        ({"note": "x" * 1001}, "$.note"),
    ],
)
async def test_a_bad_entry_is_a_400_naming_the_field(receiver: Receiver, change, field) -> None:
    body = {"process": "kiln", "from_ms": DAY0, "to_ms": DAY0 + HOUR, "tonnes": 1.0, "actor": "a"}
    r = await receiver.admin("POST", PRODUCTION_PATH, json={**body, **change})
    assert r.status_code == 400, r.text
    assert field in r.json()["message"]
    assert await receiver.store.list_production(0, 2**62, in_effect_only=False) == []


async def test_only_the_admin_token_enters_production(receiver: Receiver) -> None:
    body = {"process": "kiln", "from_ms": DAY0, "to_ms": DAY0 + HOUR, "tonnes": 1.0, "actor": "a"}
    read = {"authorization": f"Bearer {READ_TOKEN}"}
    assert (await receiver.client.post(PRODUCTION_PATH, json=body, headers=read)).status_code == 401
    assert (await receiver.client.post(PRODUCTION_PATH, json=body)).status_code == 401
    assert (await receiver.client.get(PRODUCTION_PATH)).status_code == 401
    r = await receiver.client.get(PRODUCTION_PATH, params={"colour": "red"}, headers=read)
    assert r.status_code == 400
