"""Efficiency: robust statistics, production and intensity, the detectors, and the synthetic plant
(tests/cloud/apps/plant.py) run straight through `analyse` and through the real receiver into
both stores. TIERLESS_PLANT_DAYS sets the plant's length (30 by default; at least 21)."""

from __future__ import annotations

import os
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.apps import anomalies, efficiency, intensity
from cloud.apps.anomalies import Finding, Params, Subject
from cloud.apps.figures import Trace
from cloud.apps.intensity import PlantConfig, ProcessConfig, Shift, Timeline
from cloud.apps.robust import Band, Baseline, mad, median
from cloud.storage.reads import EventRecord
from tests.cloud.apps import plant as synth
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.conftest import READ_TOKEN, Receiver
from wire.efficiency import EFFICIENCY_PATH, Efficiency
from wire.models import Event, SeriesKey

DAYS = max(21, int(os.environ.get("TIERLESS_PLANT_DAYS", "30")))
CONFIG = PlantConfig((ProcessConfig("line1"), ProcessConfig("line2")))
HOUR = synth.HOUR
UTC = ZoneInfo("UTC")
finite = st.floats(-1e6, 1e6, allow_nan=False)


# -- robust statistics -----------------------------------------------------------------------------


@given(st.lists(finite, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_median_is_order_free_and_within_the_values(values, rnd) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)
    m = median(values)
    assert median(shuffled) == m
    assert min(values) <= m <= max(values)
    below = sum(1 for v in values if v < m)
    above = sum(1 for v in values if v > m)
    assert below <= len(values) / 2
    assert above <= len(values) / 2


@given(st.lists(finite, min_size=1, max_size=40), st.floats(-1e3, 1e3), st.floats(0.01, 100))
def test_median_and_mad_follow_shift_and_scale(values, shift, scale) -> None:
    moved = [v * scale + shift for v in values]
    assert median(moved) == pytest.approx(median(values) * scale + shift, rel=1e-6, abs=1e-3)
    assert mad(moved) == pytest.approx(mad(values) * scale, rel=1e-6, abs=1e-3)
    assert mad(values) >= 0


@given(st.lists(st.floats(90, 110), min_size=5, max_size=30), st.floats(1e3, 1e9))
def test_one_outlier_cannot_move_the_baseline_far(values, outlier) -> None:
    """The point of median/MAD: one wild value in the history does not hide the next fault."""
    clean = Baseline.of(values)
    dirty = Baseline.of([*values, outlier])
    assert clean is not None
    assert dirty is not None
    assert 90 <= dirty.median <= 110
    assert dirty.mad <= 20
    band = Band(k=6, rel_floor=0.5)
    assert dirty.above(outlier, band)
    assert all(not dirty.above(v, band) for v in values)


def test_band_floors() -> None:
    flat = Baseline.of([10.0] * 7)
    assert flat is not None
    assert flat.mad == 0
    assert not flat.above(14.9, Band(rel_floor=0.5))
    assert flat.above(15.1, Band(rel_floor=0.5))
    assert flat.upper(Band(rel_floor=0.0, abs_floor=2.0)) == 12.0
    assert Baseline.of([]) is None


# -- production and intensity ---------------------------------------------------------------------


def ticket(ts: int, net: float, seq: int, **attrs: str | int) -> EventRecord:
    return EventRecord("scale", seq, "weighbridge_ticket", ts, 0, {"net_kg": net, **attrs})


def test_production_by_process_direction_material_and_ticket() -> None:
    tl = Timeline.of(0, 2 * HOUR, 2 * HOUR, UTC)
    processes = [
        ProcessConfig("melt", direction="in", materials=frozenset({"scrap"})),
        ProcessConfig("cast", direction="out"),
    ]
    events = [
        ticket(10, 5000, 1, material="scrap"),  # melt, by material, inbound
        ticket(20, 1000, 2, material="scrap", direction="out"),  # wrong direction for melt
        ticket(HOUR + 5, 3000, 3, process="cast", direction="out", ticket=7),
        ticket(HOUR + 6, 3000, 4, process="cast", direction="out", ticket=7),  # seen twice
        ticket(HOUR + 7, -5, 5, process="cast", direction="out"),  # not positive
        ticket(HOUR + 8, 2000, 6, process="cast"),  # inbound: not cast's production
    ]
    assert intensity.production(events, tl, processes) == {"melt": [5.0, 0.0], "cast": [0.0, 3.0]}


def test_idle_hours_keep_a_margin() -> None:
    assert intensity.idle_hours([0, 0, 0, 1, 0, 0, 0], 1) == [1, 1, 0, 0, 0, 1, 1]


@given(
    st.lists(st.floats(0, 100), min_size=48, max_size=48),
    st.lists(st.floats(0, 5), min_size=48, max_size=48),
)
def test_intensity_is_consumption_over_tonnes(kwh, tonnes) -> None:
    tl = Timeline.of(0, 48 * HOUR, 48 * HOUR, UTC)
    values: list[float | None] = list(kwh)
    rows = intensity.intensities(
        [values], tonnes, tl, CONFIG.shifts, process="p", medium="electricity", unit="kWh"
    )
    days = [r for r in rows if r.period == intensity.DAY_PERIOD]
    assert len(days) == 2
    for d, r in enumerate(days):
        assert r.consumption == pytest.approx(sum(kwh[24 * d : 24 * d + 24]))
        t = sum(tonnes[24 * d : 24 * d + 24])
        if t > 0:
            assert r.intensity == pytest.approx(r.consumption / t)
        else:
            assert r.intensity is None


def test_partial_day_has_no_intensity_and_night_shift_wraps() -> None:
    tl = Timeline.of(0, 48 * HOUR, 48 * HOUR, UTC)
    values: list[float | None] = [1.0] * 48
    values[30] = None
    rows = intensity.intensities(
        [values], [1.0] * 48, tl, CONFIG.shifts, process="p", medium="e", unit="kWh"
    )
    days = [r for r in rows if r.period == "day"]
    assert days[0].intensity == 1.0
    assert days[1].intensity is None
    nights = [r for r in rows if r.period == "night"]
    # the night of day 0 runs 22:00 to 06:00; the hours before 06:00 of day 0 belong to a night
    # that began before the window and make no row
    assert (nights[0].from_ms, nights[0].to_ms) == (22 * HOUR, 30 * HOUR)
    assert nights[0].intensity == 1.0
    assert days[1].history_median == 1.0
    with pytest.raises(ValueError, match="shift names"):
        PlantConfig((), shifts=(Shift("day", 6, 18),))


# -- detectors -------------------------------------------------------------------------------------


def test_silence_up_to_now_is_found() -> None:
    stamps = [i * 60_000 for i in range(120)]  # a reading a minute for two hours, then none
    found = anomalies.silent(Subject("gw", device_id="gw"), stamps, 0, 5 * HOUR, Params())
    assert [(f.kind, f.from_ms, f.to_ms, f.expected) for f in found] == [
        ("silent", stamps[-1], 5 * HOUR, 60.0)
    ]
    assert anomalies.silent(Subject("gw"), stamps, 0, stamps[-1] + HOUR // 2, Params()) == []


def test_a_counter_flat_when_it_always_is_is_not_stuck() -> None:
    """Flat at night every night is normal; flat over hours that normally move is stuck."""
    days = 8
    tl = Timeline.of(0, days * 24 * HOUR, days * 24 * HOUR, UTC)
    trace = Trace()
    level = 0.0
    hourly: list[float | None] = []
    for h in range(days * 24):
        rate = 0.0 if h % 24 < 8 else 1.0
        if h >= (days - 1) * 24 + 8:
            rate = 0.0  # stuck on the last day while it should move
        hourly.append(rate)
        for q in range(4):
            level += rate / 4
            trace.ts.append(h * HOUR + (q + 1) * 15 * 60_000)
            trace.level.append(level)
    found = anomalies.stuck(
        Subject("m"), trace, hourly, tl, "kWh", Params(), max_step_ms=15 * 60_000
    )
    assert len(found) == 1
    f = found[0]
    assert f.from_ms == (days - 1) * 24 * HOUR
    assert f.expected == pytest.approx(16.0)  # 08:00 to 24:00 at 1 kWh/h
    assert f.seen == 0.0


# -- the synthetic plant --------------------------------------------------------------------------


def explained(f: Finding, faults: list[synth.Fault], plant: synth.Plant) -> bool:
    """A finding is explained by a planted fault when it overlaps its window and concerns its
    series, device or process (a leak also raises the process's m³/t)."""
    by_label = {efficiency.label(s): s for s in plant.series}
    for fault in faults:
        if f.to_ms <= fault.from_ms or f.from_ms >= fault.to_ms:
            continue
        s = by_label.get(fault.subject)
        if f.subject == fault.subject or (
            s is not None and (f.process, f.medium) == (s.process, s.medium)
        ):
            return True
    return False


def check_findings(plant: synth.Plant, findings: list[Finding]) -> None:
    for fault in plant.faults:
        hits = [
            f
            for f in findings
            if f.kind == fault.kind
            and f.subject == fault.subject
            and f.from_ms < fault.to_ms
            and f.to_ms > fault.from_ms
        ]
        assert hits, f"{fault.name} not found: {[f.describe() for f in findings]}"
        f = hits[0]
        if fault.kind in ("baseload", "night_flow"):
            assert f.seen > 5 * f.expected
            assert f.unit.endswith("/h")
        elif fault.kind == "stuck":
            assert (f.from_ms, f.to_ms) == (fault.from_ms, fault.to_ms)
            assert f.seen == 0
            assert f.expected > 100
        elif fault.kind == "silent":
            assert f.expected == 900
            assert f.seen >= 6 * 3600
            assert f.from_ms <= fault.from_ms
            assert f.to_ms >= fault.to_ms
        else:
            assert (
                fault.from_ms <= f.from_ms < fault.from_ms + 3 * synth.DAY
            )  # a weekend may lie between
            assert f.seen / f.expected == pytest.approx(1.25, abs=0.05)  # 150 -> 195 kWh/t
    stray = [f.describe() for f in findings if not explained(f, plant.faults, plant)]
    assert stray == [], "false alerts"


def run(plant: synth.Plant) -> list[Finding]:
    return efficiency.analyse(
        plant.series,
        plant.rows,
        plant.events,
        CONFIG,
        from_ms=plant.from_ms,
        to_ms=plant.to_ms,
        until_ms=plant.to_ms,
    ).findings


def test_clean_plant_gives_no_finding() -> None:
    plant = synth.generate(DAYS, faults=())
    assert [f.describe() for f in run(plant)] == []


def test_every_planted_fault_is_found_with_its_evidence() -> None:
    plant = synth.generate(DAYS)
    check_findings(plant, run(plant))


@pytest.mark.parametrize("fault", synth.FAULTS)
def test_each_fault_alone_is_found_and_nothing_else(fault: str) -> None:
    plant = synth.generate(DAYS, faults=(fault,), seed=11)
    check_findings(plant, run(plant))


async def feed(receiver: Receiver, plant: synth.Plant) -> None:
    """Send the plant as its gateways and its scale would: a batch per device and day."""
    receiver.clock.ms = plant.to_ms
    days = plant.days
    gateways = {d: await receiver.enrolled(d) for d in ("gw-a", "gw-b", "scale-1")}
    for day in range(days):
        lo, hi = plant.from_ms + day * synth.DAY, plant.from_ms + (day + 1) * synth.DAY
        for device in ("gw-a", "gw-b"):
            data = []
            for s in plant.series:
                if s.device_id != device:
                    continue
                key = SeriesKey(s.metric, s.unit, s.site, s.area, s.process, s.medium)
                rows = [r for r in plant.rows[s.series_id] if lo <= r[0] < hi]
                if rows:
                    data.append(series_data(key, rows))
            if data:
                r = await receiver.send(gateways[device], freeze(gateways[device], data))
                assert r.status_code == 200, r.text
        tickets = [
            Event(e.kind, e.ts_ms, tuple(e.attrs.items()))
            for e in plant.events
            if lo <= e.ts_ms < hi
        ]
        if tickets:
            r = await receiver.send(gateways["scale-1"], freeze(gateways["scale-1"], [], tickets))
            assert r.status_code == 200, r.text


async def test_the_plant_through_the_receiver_into_the_store(receiver: Receiver) -> None:
    """The same plant sent as gateways send it, read back by the app from the platform tables."""
    plant = synth.generate(DAYS)
    await feed(receiver, plant)
    report = await efficiency.load(
        receiver.store, CONFIG, from_ms=plant.from_ms, to_ms=plant.to_ms, until_ms=plant.to_ms
    )
    check_findings(plant, report.findings)
    days = [r for r in report.intensity if r.period == "day" and r.intensity is not None]
    assert {(r.process, r.medium) for r in days} >= {("line1", "electricity"), ("line2", "water")}

    # The same through the query API, which finds the processes from the tickets.
    auth = {"authorization": f"Bearer {READ_TOKEN}"}
    params = {"from_ms": plant.from_ms, "to_ms": plant.to_ms}
    r = await receiver.client.get(EFFICIENCY_PATH, params=params, headers=auth)
    assert r.status_code == 200, r.text
    body = msgspec.json.decode(r.content, type=Efficiency)
    assert body.processes == ["line1", "line2"]
    assert [(f.kind, f.subject, f.from_ms) for f in body.findings] == [
        (f.kind, f.subject, f.from_ms) for f in report.findings
    ]
    assert len(body.intensity) == len(report.intensity)
    assert body.tonnes["line1"] == pytest.approx(report.tonnes["line1"])
    for bad in ({"shifts": "day:6-18"}, {"direction": "up"}, {"colour": "red"}):
        r = await receiver.client.get(EFFICIENCY_PATH, params={**params, **bad}, headers=auth)
        assert r.status_code == 400, r.text
    assert (await receiver.client.get(EFFICIENCY_PATH)).status_code == 401
