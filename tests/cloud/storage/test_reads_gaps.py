"""Gaps in aggregates: a BAD reading is the source's "no value here" marker (value 0), so a
bucket leaves it out, and a bucket with nothing else is no bucket: the trend's line breaks there
instead of dipping to 0 (both backends)."""

from __future__ import annotations

from cloud.storage.reads import Agg, SeriesFilter
from cloud.storage.store import Store
from tests.cloud.helpers import Gateway, register
from wire.models import TIME_UNTRUSTED, Quality


async def test_bad_readings_are_left_out_of_buckets(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    b = gw.next_batch(n_readings=30, n_series=1)
    s = b.batch.series[0]
    for i in range(10, 20):  # a source that lost its device: BAD markers per poll
        s.values[i], s.quality[i] = 0.0, Quality.BAD
    s.quality[25] = Quality.GOOD | TIME_UNTRUSTED  # a value, though its time is doubtful
    await store.store_batch(gw.meta(b), b.batch)
    (info,) = await store.list_series(SeriesFilter(device="gw-1"))
    usable = [(t, v) for t, v, q in zip(s.ts_ms, s.values, s.quality, strict=True) if q & 3 != 2]
    whole = await store.buckets(info.series_id, 0, 2**62, 2**40, Agg.AVG)
    assert [p.count for p in whole] == [20]
    assert whole[0].value == sum(v for _, v in usable) / 20
    low = await store.buckets(info.series_id, 0, 2**62, 2**40, Agg.MIN)
    assert low[0].value == min(v for _, v in usable)
    each = await store.buckets(info.series_id, 0, 2**62, 1, Agg.LAST)
    assert [p.ts_ms for p in each] == [t for t, _ in usable]  # the gap is a gap
