"""Figures: counters with resets, rollovers, gaps, excursions and out-of-order arrival; sums by
tag; materials from weighbridge tickets. Pure unit and property tests, then the query API on both
backends."""

from __future__ import annotations

import math
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cloud.apps import figures
from cloud.apps.figures import CounterPolicy, Interval, Role, Status
from cloud.storage.reads import EventRecord, SeriesInfo
from tests.cloud.conftest import READ_TOKEN, Receiver
from tests.cloud.helpers import Frozen, Gateway
from wire.codec import batch_digest, encode_batch
from wire.models import (
    TIME_UNTRUSTED,
    Batch,
    ClockReport,
    ClockState,
    Counters,
    Event,
    Quality,
    SeriesData,
    SeriesKey,
)

MIN = 60_000
HOUR = 3_600_000
POLICY = CounterPolicy()
UTC = ZoneInfo("UTC")
READ = {"authorization": f"Bearer {READ_TOKEN}"}


def pts(values, *, step=MIN, t0=0, quality=0):
    return [(t0 + i * step, float(v), quality) for i, v in enumerate(values)]


def hours(n: int, t0: int = 0) -> list[int]:
    return figures.grid(t0, t0 + n * HOUR, Interval.HOUR, UTC)


def per_hour(points, n_hours=2, *, until=None, policy=POLICY):
    trace = figures.clean_counter(points, policy)
    b = hours(n_hours)
    until = b[-1] if until is None else until
    return figures.attribute(trace, b, until_ms=until, max_step_ms=policy.max_step_ms)


# -- which series are counters -----------------------------------------------------------------


def test_counter_rule_by_unit_and_metric() -> None:
    assert figures.is_counter("energy_import", "kWh")
    assert figures.is_counter("cooling_water", "m3")
    assert figures.is_counter("compressed_air", "Nm3")
    assert figures.is_counter("anything", "Wh")
    assert not figures.is_counter("power_total", "W")
    assert not figures.is_counter("flow_rate", "m3/h")
    assert not figures.is_counter("net_mass", "kg")
    assert not figures.is_counter("energy_delta", "kWh")
    assert not figures.is_counter("volume_positive", "")
    assert figures.counter_unit("Wh") == ("kWh", 0.001)
    assert figures.counter_unit("L") == ("m³", 0.001)


def test_gateways_ucum_counters_count_and_a_daily_counter_does_not() -> None:
    """Tasmota's ENERGY.Today resets at midnight: next to ENERGY.Total it would count the same
    energy twice. Gateways send it as `<device>.energy_today` in `kW.h` (wire/units.py)."""
    assert figures.is_counter("plug.energy_total", "kW.h")
    assert figures.is_counter("plug.relay0.energy_total", "W.min")
    assert figures.counter_unit("W.min") == ("kWh", 1.0 / 60_000.0)
    assert not figures.is_counter("plug.energy_today", "kW.h")
    assert not figures.is_counter("plug.energy_yesterday", "kW.h")
    assert not figures.is_counter("plug.energy_period", "W.h")
    series = [
        SeriesInfo(1, "gw", "plug.energy_total", "kW.h", "", "", "", "electricity"),
        SeriesInfo(2, "gw", "plug.energy_today", "kW.h", "", "", "", "electricity"),
    ]
    assert figures.roles(series) == {1: Role.CONSUMPTION}


def test_roles_count_a_meter_once() -> None:
    def s(i, metric, device="gw", unit="kWh", area="a"):
        return SeriesInfo(i, device, metric, unit, "site", area, "p", "electricity")

    series = [
        s(1, "energy_import"),
        s(2, "energy_export"),
        s(3, "energy_total"),
        s(4, "power_total", unit="W"),
        s(5, "energy_total", area="b"),  # another meter with no import register
    ]
    assert figures.roles(series) == {
        1: Role.CONSUMPTION,
        2: Role.EXPORT,
        3: Role.OTHER,
        5: Role.CONSUMPTION,
    }


# -- counters: unit cases ----------------------------------------------------------------------


def test_steady_counter_per_hour() -> None:
    fig = per_hour(pts([100 + i for i in range(121)]))  # 0:00 .. 2:00, one per minute
    assert fig.values == [60.0, 60.0]
    assert [fig.status(k) for k in range(2)] == [Status.COMPLETE, Status.COMPLETE]
    assert fig.total == 120.0


def test_out_of_order_arrival_is_sorted() -> None:
    points = pts([100 + i for i in range(121)])
    shuffled = points[:]
    random.Random(7).shuffle(shuffled)
    assert per_hour(shuffled).values == per_hour(points).values == [60.0, 60.0]


def test_bad_and_untrusted_readings_cost_resolution_only() -> None:
    points = pts([100 + i for i in range(121)])
    points[30] = (points[30][0], 0.0, Quality.BAD)
    points[31] = (points[31][0], 5_000.0, Quality.GOOD | TIME_UNTRUSTED)
    trace = figures.clean_counter(points, POLICY)
    assert trace.excluded == 2
    fig = per_hour(points)
    assert fig.values == [60.0, 60.0]


def test_reset_starts_a_new_baseline_and_the_step_is_unknown() -> None:
    values = [1000 + i for i in range(61)] + [2 + i for i in range(60)]  # replaced at 1:01
    fig = per_hour(pts(values))
    assert fig.values[0] == 60.0
    assert fig.values[1] == 59.0  # 2 -> 61; the minute across the reset is unknown
    assert fig.status(1) is Status.PARTIAL
    assert [(g.from_ms, g.to_ms, g.consumption, g.reset) for g in fig.gaps] == [
        (60 * MIN, 61 * MIN, None, True)
    ]
    assert all(v is None or v >= 0 for v in fig.values)


def test_rollover_adds_the_wrap() -> None:
    values = [99_940 + i for i in range(60)] + [i for i in range(61)]  # wraps at 10^5
    trace = figures.clean_counter(pts(values), POLICY)
    assert trace.breaks == {60: 100_000.0}
    fig = per_hour(pts(values))
    assert fig.values == [60.0, 60.0]


def test_rollover_of_exactly_the_fraction_survives_float_rounding() -> None:
    # 974.538... + 50 wraps at 1000 to 24.538...; M - level + value is 50.000000000000114 in
    # floats, one rounding above 5 % of M: still a rollover, not a reset that loses the step
    policy = CounterPolicy(rollover_fraction=0.05)
    top = 970 + 4.538427968238757
    wrapped = math.fmod(top + 50.0, 1000.0)
    trace = figures.clean_counter(pts([top, wrapped]), policy)
    assert trace.breaks == {1: 1000.0}
    assert trace.delta(1) == pytest.approx(50.0)


def test_rollover_of_a_scaled_binary_register() -> None:
    top = 2**32 / 1000  # a Wh register read as kWh
    values = [top - 3, top - 1, 1.0, 3.0]
    trace = figures.clean_counter(pts(values), POLICY)
    assert trace.breaks == {2: top}
    assert trace.delta(2) == pytest.approx(2.0)


def test_excursions_are_discarded_not_spikes() -> None:
    values = [100 + i for i in range(121)]
    values[20] = 0  # a zero read
    values[40:43] = [99_999, 99_999, 99_999]  # a short high excursion
    trace = figures.clean_counter(pts(values), POLICY)
    assert trace.excursions == 4
    assert trace.breaks == {}
    assert per_hour(pts(values)).values == [60.0, 60.0]


def test_jitter_below_the_level_adds_nothing_until_passed() -> None:
    fig = per_hour(pts([100.0, 100.00001, 100.0, 100.5]))
    assert fig.total == pytest.approx(0.5)


def test_gap_across_boundaries_is_not_attributed() -> None:
    # readings 0:00-0:40, then nothing until 2:20, then to 3:00
    values = [(t, 100.0 + t) for t in range(0, 41)] + [(t, 100.0 + t) for t in range(140, 181)]
    points = [(t * MIN, v, 0) for t, v in values]
    fig = per_hour(points, 3)
    assert fig.values[0] == 40.0
    assert fig.values[1] is None  # nothing known: never zero
    assert fig.values[2] == 40.0
    assert [fig.status(k) for k in range(3)] == [Status.PARTIAL, Status.GAP, Status.PARTIAL]
    assert [(g.from_ms, g.to_ms, g.consumption) for g in fig.gaps] == [(40 * MIN, 140 * MIN, 100.0)]
    assert fig.unattributed == 100.0
    # the day holds the gap whole: the register makes the total exact
    day = figures.attribute(
        figures.clean_counter(points, POLICY),
        [0, 24 * HOUR],
        until_ms=180 * MIN,
        max_step_ms=POLICY.max_step_ms,
    )
    assert day.values == [180.0]


def test_long_step_inside_one_interval_is_exact() -> None:
    points = pts([100.0, 130.0], step=50 * MIN)
    fig = per_hour(points, 1, until=50 * MIN)
    assert fig.values == [30.0]
    assert fig.status(0) is Status.COMPLETE


def test_short_step_across_a_boundary_is_split_by_time() -> None:
    points = [(55 * MIN, 0.0, 0), (65 * MIN, 20.0, 0)]
    fig = figures.attribute(
        figures.clean_counter(points, POLICY),
        hours(2),
        until_ms=65 * MIN,
        max_step_ms=POLICY.max_step_ms,
    )
    assert fig.values[0] == pytest.approx(10.0)
    assert fig.values[1] == pytest.approx(10.0)


def test_open_interval_is_not_a_gap_until_a_reading_is_due() -> None:
    points = pts([100 + i for i in range(91)])  # to 1:30
    fig = per_hour(points, 2, until=91 * MIN + 30_000)  # now 1:31:30
    assert fig.status(1) is Status.COMPLETE
    late = per_hour(points, 2, until=119 * MIN)  # 29 minutes without a reading
    assert late.status(1) is Status.PARTIAL
    assert per_hour(points[:50], 2, until=55 * MIN).status(1) is Status.FUTURE


def test_group_sums_convert_units_and_keep_status() -> None:
    a = per_hour(pts([100 + i for i in range(121)]))  # kWh
    b = per_hour(pts([1000 * i for i in range(121)]))  # Wh: 60 kWh per hour
    gap = per_hour(pts([100 + i for i in range(61)]), until=120 * MIN)  # stops at 1:00
    both = figures.combine([(a, 1.0), (b, 0.001)])
    assert both.values == [120.0, 120.0]
    assert both.status(1) is Status.COMPLETE
    with_gap = figures.combine([(a, 1.0), (gap, 1.0)])
    assert with_gap.values == [120.0, 60.0]
    assert with_gap.status(1) is Status.PARTIAL


def test_grid_follows_the_local_calendar() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = 1_774_738_800_000  # 2026-03-29 00:00 in Berlin (+01:00), the spring-forward day
    days = figures.grid(start, start + 2 * 86_400_000, Interval.DAY, berlin)
    assert [(b - start) // HOUR for b in days] == [0, 23, 47, 48]
    hours_that_day = figures.grid(start, days[1], Interval.HOUR, berlin)
    assert len(hours_that_day) - 1 == 23
    kolkata = figures.grid(0, 3 * HOUR, Interval.HOUR, ZoneInfo("Asia/Kolkata"))
    assert [b % HOUR for b in kolkata[1:-1]] == [30 * MIN, 30 * MIN, 30 * MIN]
    assert figures.local_day(start + 5 * HOUR, berlin) == (start, start + 23 * HOUR)


# -- counters: properties -----------------------------------------------------------------------

increments = st.lists(
    st.floats(min_value=0, max_value=50, allow_nan=False, allow_infinity=False),
    min_size=2,
    max_size=200,
)
steps_ms = st.lists(st.integers(min_value=1_000, max_value=10 * MIN), min_size=200, max_size=200)


def _true_series(incs, gaps, start_value=1000.0):
    t, v, out = 0, start_value, []
    for inc, dt in zip(incs, gaps, strict=False):
        t += dt
        v += inc
        out.append((t, v))
    return out


@settings(max_examples=150, deadline=None)
@given(incs=increments, dts=steps_ms, seed=st.integers(0, 2**32))
def test_property_monotone_counter_totals_and_order(incs, dts, seed) -> None:
    series = _true_series(incs, dts)
    points = [(t, v, 0) for t, v in series]
    b = figures.grid(series[0][0], series[-1][0] + 1, Interval.HOUR, UTC)
    # shorter than any step: never split, so every boundary-crossing step is a gap
    policy = CounterPolicy(max_step_ms=10 * MIN)
    fig = figures.attribute(
        figures.clean_counter(points, policy), b, until_ms=b[-1], max_step_ms=policy.max_step_ms
    )
    assert all(v is None or v >= -1e-9 for v in fig.values)
    true_total = series[-1][1] - series[0][1]
    assert fig.total + fig.unattributed == pytest.approx(true_total, rel=1e-9, abs=1e-6)
    shuffled = points[:]
    random.Random(seed).shuffle(shuffled)
    again = figures.attribute(
        figures.clean_counter(shuffled, policy), b, until_ms=b[-1], max_step_ms=policy.max_step_ms
    )
    assert again.values == fig.values


@settings(max_examples=150, deadline=None)
@given(incs=increments, dts=steps_ms, modulus_exp=st.integers(3, 7))
# a step of exactly the rollover fraction, one float rounding above it after the wrap
@example(incs=[4.538427968238757, 50.0], dts=[1_000] * 200, modulus_exp=3)
def test_property_rollover_is_invisible(incs, dts, modulus_exp) -> None:
    modulus = 10.0**modulus_exp
    series = _true_series(incs, dts, start_value=modulus - 30)
    wrapped = [(t, math.fmod(v, modulus), 0) for t, v in series]
    straight = [(t, v, 0) for t, v in series]
    b = [series[0][0], series[-1][0] + 1]
    policy = CounterPolicy(max_step_ms=10 * MIN, rollover_fraction=0.05)
    a = figures.attribute(figures.clean_counter(wrapped, policy), b, until_ms=b[-1], max_step_ms=1)
    c = figures.attribute(figures.clean_counter(straight, policy), b, until_ms=b[-1], max_step_ms=1)
    assert a.total == pytest.approx(c.total, rel=1e-6, abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(
    incs=increments,
    dts=steps_ms,
    where=st.integers(1, 150),
    value=st.sampled_from([0.0, -5.0, 1e9]),
)
def test_property_isolated_excursion_changes_nothing(incs, dts, where, value) -> None:
    series = _true_series([i + 0.5 for i in incs], dts)  # strictly rising
    if where >= len(series) - 1:
        return
    clean = [(t, v, 0) for t, v in series]
    dirty = clean[:]
    dirty[where] = (dirty[where][0], value, 0)
    b = [series[0][0], series[-1][0] + 1]

    def total(points):
        trace = figures.clean_counter(points, POLICY)
        return figures.attribute(trace, b, until_ms=b[-1], max_step_ms=HOUR).total

    assert total(dirty) == pytest.approx(total(clean))


@settings(max_examples=100, deadline=None)
@given(incs=increments, dts=steps_ms, cut=st.integers(1, 150), new_start=st.floats(0, 10))
def test_property_reset_never_negative_never_a_spike(incs, dts, cut, new_start) -> None:
    series = _true_series(incs, dts, start_value=5_000.0)
    if cut >= len(series):
        return
    offset = series[cut][1] - new_start
    points = [(t, v if i < cut else v - offset, 0) for i, (t, v) in enumerate(series)]
    b = figures.grid(series[0][0], series[-1][0] + 1, Interval.HOUR, UTC)
    fig = figures.attribute(
        figures.clean_counter(points, POLICY), b, until_ms=b[-1], max_step_ms=HOUR
    )
    true_total = series[-1][1] - series[0][1]
    assert all(v is None or v >= -1e-9 for v in fig.values)
    assert fig.total <= true_total + 1e-6  # only the step across the reset is missing


# -- materials --------------------------------------------------------------------------------


def ticket(ts, material, net, *, device="gw", seq=1, quality=0, **attrs):
    return EventRecord(
        device,
        seq,
        "weighbridge_ticket",
        ts,
        quality,
        {"material": material, "net_kg": net, **attrs},
    )


def test_materials_per_material_and_day() -> None:
    day = 86_400_000
    events = [
        ticket(1000, "GRAVEL", 25_340, ticket=1),
        ticket(2000, "GRAVEL", 24_000.5, ticket=2),
        ticket(2500, "GRAVEL", 24_000.5, ticket=2),  # printed twice
        ticket(3000, "SAND", "18120", ticket=3),
        ticket(day + 5, "SAND", 17_000, ticket=4),
        ticket(4000, "SAND", 0, ticket=5),
        ticket(5000, "", 100, ticket=6),
        ticket(6000, "SAND", 100, ticket=7, quality=Quality.BAD),
        ticket(7000, "SAND", 500, ticket=8, direction="out"),
        ticket(8000, "SAND", 200, ticket=9, quality=Quality.UNCERTAIN),
        EventRecord("gw", 1, "door_open", 9000, 0, {}),
    ]
    report = figures.materials_received(events, [0, day, 2 * day])
    got = {m.material: (m.net_kg, m.tickets) for m in report.materials}
    assert got == {"GRAVEL": ([49_340.5, 0.0], [2, 0]), "SAND": ([18_320.0, 17_000.0], [2, 1])}
    assert report.skipped == {
        "bad": 1,
        "no_material": 1,
        "no_net_kg": 0,
        "not_positive": 1,
        "outbound": 1,
        "duplicate": 1,
    }
    assert report.flagged == 1


# -- through the API, on both backends ------------------------------------------------------------


def freeze(gw: Gateway, series, events=(), counters=None) -> Frozen:
    """The gateway's next batch with these series and events, as an agent would cut it."""
    batch = Batch(
        gw.device_id,
        gw.head_seq + 1,
        gw.head_digest,
        "boot-1",
        series=list(series),
        events=list(events),
        counters=counters or Counters(),
        clock=ClockReport(ClockState.SYNCED, 5),
    )
    body = encode_batch(batch)
    frozen = Frozen(batch, body, batch_digest(body))
    gw.head_seq, gw.head_digest = frozen.seq, frozen.digest
    return frozen


def series_data(key: SeriesKey, rows) -> SeriesData:
    s = SeriesData(key)
    for t, v, *q in rows:
        s.append(t, v, q[0] if q else 0)
    return s


async def test_consumption_and_materials_through_the_api(receiver: Receiver) -> None:
    day0 = 1_789_948_800_000  # 2026-09-21 00:00 UTC
    receiver.clock.ms = day0 + 2 * HOUR + 13 * MIN + 20_000
    gw = await receiver.enrolled("gw-plant")
    main = SeriesKey("energy_import", "kWh", "plant", "hall-a", "melting", "electricity")
    spare = SeriesKey("energy_import", "Wh", "plant", "hall-b", "casting", "electricity")
    water = SeriesKey("cooling_water", "m3", "plant", "hall-a", "melting", "water")
    power = SeriesKey("power_total", "kW", "plant", "hall-a", "melting", "electricity")
    t = [day0 + i * MIN for i in range(134)]  # 00:00 .. 02:13
    # main: 1 kWh/min, replaced at 01:00 (new meter starts at 0.5), one BAD zero read
    main_rows = [(ts, (1000 + i) if i < 60 else (0.5 + i - 60), 0) for i, ts in enumerate(t)]
    main_rows[10] = (t[10], 0.0, int(Quality.BAD))
    # spare (Wh): 500 Wh/min with a gap 00:20-01:40
    spare_rows = [(ts, 10_000 + 500 * i) for i, ts in enumerate(t) if not 20 < i < 100]
    # water wraps at 10^4
    water_rows = [(ts, (9_990 + 0.5 * i) % 10_000) for i, ts in enumerate(t)]
    power_rows = [(ts, 60.0) for ts in t]
    late, early = main_rows[: len(main_rows) // 2], main_rows[len(main_rows) // 2 :]
    tickets = [
        Event(
            "weighbridge_ticket",
            day0 + HOUR,
            (("ticket", 1), ("material", "GRAVEL"), ("net_kg", 25_340)),
        ),
        Event(
            "weighbridge_ticket",
            day0 + 2 * HOUR,
            (("ticket", 2), ("material", "SAND"), ("net_kg", 18_120)),
        ),
    ]
    for frozen in (
        freeze(gw, [series_data(main, early), series_data(spare, spare_rows)], tickets),
        freeze(
            gw,
            [
                series_data(main, late),
                series_data(water, water_rows),
                series_data(power, power_rows),
            ],
        ),
    ):
        r = await receiver.send(gw, frozen)
        assert r.status_code == 200, r.text

    r = await receiver.client.get("/v1/figures/consumption?detail=series", headers=READ)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["interval"], body["tz"]) == ("hour", "UTC")
    assert body["intervals"][:3] == [day0, day0 + HOUR, day0 + 2 * HOUR]
    assert len(body["intervals"]) == 24
    by_key = {(g["key"]["medium"], g["unit"]): g for g in body["groups"]}
    elec = by_key[("electricity", "kWh")]
    # hour 0: main 59 (one BAD read costs nothing; the minute across the reset at 01:00 is
    # unknown) + spare 20 min * 0.5 kWh, then its gap
    assert elec["values"][0] == pytest.approx(59 + 10)
    assert elec["status"][0] == "partial"
    # hour 1: main 60 + spare 01:40-02:00
    assert elec["values"][1] == pytest.approx(60 + 10)
    assert elec["status"][3:] == ["future"] * 21
    water_group = by_key[("water", "m³")]
    assert water_group["values"][:2] == [pytest.approx(30.0), pytest.approx(30.0)]
    series = {(s["series"]["metric"], s["series"]["unit"]): s for s in body["series"]}
    assert ("power_total", "kW") not in series  # not a counter
    assert series[("energy_import", "kWh")]["resets"] == [day0 + HOUR]
    assert series[("energy_import", "kWh")]["excluded"] == 1
    assert series[("cooling_water", "m3")]["rollovers"] == [
        {"ts_ms": day0 + 20 * MIN, "modulus": 10_000.0}
    ]
    spare_gaps = series[("energy_import", "Wh")]["gaps"]
    assert spare_gaps == [
        {
            "from_ms": day0 + 20 * MIN,
            "to_ms": day0 + 100 * MIN,
            "consumption": 40_000.0,
            "reset": False,
        }
    ]

    r = await receiver.client.get(
        f"/v1/figures/consumption?interval=total&group_by=process,medium&from_ms={day0}"
        f"&to_ms={day0 + 2 * HOUR}&site=plant",
        headers=READ,
    )
    groups = {
        (g["key"]["process"], g["key"]["medium"], g["unit"]): g["values"][0]
        for g in r.json()["groups"]
    }
    assert groups == {
        ("melting", "electricity", "kWh"): pytest.approx(119.0),
        ("melting", "water", "m³"): pytest.approx(60.0),
        ("casting", "electricity", "kWh"): pytest.approx(60.0),  # the gap lies inside: exact
    }

    r = await receiver.client.get("/v1/figures/materials", headers=READ)
    assert r.status_code == 200
    mats = {m["material"]: (m["total_kg"], m["total_tickets"]) for m in r.json()["materials"]}
    assert mats == {"GRAVEL": (25_340.0, 1), "SAND": (18_120.0, 1)}
    r = await receiver.client.get(
        "/v1/figures/materials?interval=hour&tz=Europe/Berlin", headers=READ
    )
    assert (r.status_code, len(r.json()["intervals"])) == (200, 24)


async def test_figure_parameters_are_checked(receiver: Receiver) -> None:
    for query in (
        "interval=week",
        "tz=Mars/Olympus",
        "group_by=colour",
        "group_by=medium,medium",
        "from_ms=10&to_ms=5",
        f"from_ms=0&to_ms={401 * 86_400_000}",
        "detail=all",
        "max_step_ms=0",
        "nope=1",
    ):
        r = await receiver.client.get(f"/v1/figures/consumption?{query}", headers=READ)
        assert r.status_code == 400, query
        assert r.json()["error"] == "bad_request"
    assert (await receiver.client.get("/v1/figures/consumption")).status_code == 401
    assert (await receiver.client.get("/v1/figures/materials")).status_code == 401
    r = await receiver.client.get("/v1/figures/materials?colour=red", headers=READ)
    assert r.status_code == 400
