"""The read interface on both backends (PostgreSQL both ways, see conftest.py): readings and
events round trip exactly, filters, ranges, buckets and latest values."""

from __future__ import annotations

import pytest

from cloud.storage.batches import Outcome
from cloud.storage.reads import Agg, SeriesFilter
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, Gateway, register
from wire.models import GENESIS, Event, SeriesData, SeriesKey


async def test_readings_and_events_round_trip_exactly(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    events = [Event("ticket", START_MS + 5, (("lot", "A-17"), ("net_kg", 1234.5), ("ok", True)))]
    b1 = gw.build(1, GENESIS, n_readings=30, n_series=3, events=events)
    b1.batch.series[0].quality[1] = 6  # bad + time untrusted
    await store.store_batch(gw.meta(b1), b1.batch)
    series = await store.list_series(SeriesFilter(device="gw-1"))
    assert [s.metric for s in series] == ["power_00", "power_01", "power_02"]
    s0 = b1.batch.series[0]
    points = await store.readings(series[0].series_id, 0, 2**62, 1000)
    assert [(p.ts_ms, p.value, p.quality) for p in points] == list(
        zip(s0.ts_ms, s0.values, s0.quality, strict=True)
    )
    [ev] = await store.events("gw-1", "ticket", 0, 2**62, 10)
    assert (ev.seq, ev.ts_ms, ev.attrs) == (
        1,
        START_MS + 5,
        {"lot": "A-17", "net_kg": 1234.5, "ok": True},
    )
    assert await store.events("gw-2", None, 0, 2**62, 10) == []


async def test_query_filters_ranges_buckets_and_latest(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    b = gw.next_batch(n_readings=20, n_series=2)
    await store.store_batch(gw.meta(b), b.batch)
    assert len(await store.list_series(SeriesFilter())) == 2
    assert len(await store.list_series(SeriesFilter(area="hall-1"))) == 1
    assert await store.list_series(SeriesFilter(site="elsewhere")) == []
    s0 = b.batch.series[0]
    sid = (await store.list_series(SeriesFilter(metric="power_00")))[0].series_id
    info = await store.get_series(sid)
    assert info is not None
    assert (info.metric, info.unit, info.medium) == ("power_00", "kW", "electricity")
    assert await store.get_series(10**9) is None

    window = await store.readings(sid, s0.ts_ms[2], s0.ts_ms[5], 100)
    assert [p.ts_ms for p in window] == s0.ts_ms[2:5]
    assert len(await store.readings(sid, 0, 2**62, 4)) == 4

    bucket = 5000
    expected: dict[int, list[float]] = {}
    for ts, v in zip(s0.ts_ms, s0.values, strict=True):
        expected.setdefault(ts // bucket * bucket, []).append(v)
    want = {
        Agg.AVG: {k: sum(v) / len(v) for k, v in expected.items()},
        Agg.MIN: {k: min(v) for k, v in expected.items()},
        Agg.MAX: {k: max(v) for k, v in expected.items()},
        Agg.LAST: {k: v[-1] for k, v in expected.items()},
        Agg.SUM: {k: sum(v) for k, v in expected.items()},
        Agg.COUNT: {k: float(len(v)) for k, v in expected.items()},
    }
    for agg, values in want.items():
        got = await store.buckets(sid, 0, 2**62, bucket, agg)
        assert {p.ts_ms: p.value for p in got} == pytest.approx(values), agg
        assert [p.count for p in got] == [len(expected[k]) for k in sorted(expected)]

    latest = await store.latest(SeriesFilter(device="gw-1"))
    assert [(lv.series.metric, lv.ts_ms, lv.value) for lv in latest] == [
        (s.key.metric, s.ts_ms[-1], s.values[-1]) for s in b.batch.series
    ]
    assert await store.latest(SeriesFilter(medium="water")) == []


async def test_awkward_names_values_and_attributes_round_trip_exactly(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    names = ['a "quoted" \\ back,slash', "{braces}", "NULL", "", " spaced ", "é中😀"]
    series = []
    for i, name in enumerate(names):
        key = SeriesKey(f"m{i}-{name}" if name else f"m{i}", name, name, name, name, name)
        series.append(SeriesData(key))
    values = [1e16, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -123.456, 0.0]
    for s in series:
        for j, v in enumerate(values):
            s.append(START_MS + j, v, j % 4)
    attrs = (("q", 'say "hi" \\ {x}, NULL'), ("n", 1.5e16), ("neg", -7), ("ok", False))
    frozen = gw.build(1, GENESIS, n_readings=0, events=[Event('t"k', START_MS, attrs, 2)])
    frozen.batch.series.extend(series)
    r = await store.store_batch(gw.meta(frozen), frozen.batch)
    assert r.outcome is Outcome.STORED
    stored = await store.list_series(SeriesFilter(device="gw-1"))
    assert sorted(
        (s.metric, s.unit, s.site, s.area, s.process, s.medium) for s in stored
    ) == sorted(
        (s.key.metric, s.key.unit, s.key.site, s.key.area, s.key.process, s.key.medium)
        for s in series
    )
    for info in stored:
        points = await store.readings(info.series_id, 0, 2**62, 100)
        assert [(p.ts_ms, p.value, p.quality) for p in points] == [
            (START_MS + j, v, j % 4) for j, v in enumerate(values)
        ]
    [ev] = await store.events("gw-1", None, 0, 2**62, 10)
    assert (ev.kind, ev.quality, ev.attrs) == ('t"k', 2, dict(attrs))
    # the second batch finds every series by the ids cached from the first
    second = gw.build(2, frozen.digest, n_readings=0)
    second.batch.series.extend(SeriesData(s.key, [START_MS + 100], [1.0], [0]) for s in series)
    assert (await store.store_batch(gw.meta(second), second.batch)).outcome is Outcome.STORED
    assert len(await store.list_series(SeriesFilter())) == len(series)
