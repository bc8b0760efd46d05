"""Roll-ups on both backends: after batches whose readings arrive late and out of order, every
bucketed read served from the hourly and daily roll-ups equals the aggregate of the raw readings
(computed here from what was sent) and the store's raw bucketed query."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud.storage.batches import Outcome
from cloud.storage.reads import Agg, SeriesFilter
from cloud.storage.rollups import COLUMNS, DAY_MS, HOUR_MS, LEVELS, aggregate, segments
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, Frozen, Gateway, register
from wire.codec import batch_digest, encode_batch
from wire.models import GENESIS, Batch, ClockReport, ClockState, SeriesData, SeriesKey

DAY0 = (START_MS // DAY_MS) * DAY_MS
SPAN_MS = 3 * DAY_MS
KEYS = [SeriesKey(f"m{i}", "kW", "site", "hall", "proc", "electricity") for i in range(2)]
_devices = itertools.count()

# One reading: (series index, ts offset, value, quality); a batch is a list of them.
reading = st.tuples(
    st.integers(0, len(KEYS) - 1),
    st.integers(0, SPAN_MS - 1),
    st.integers(-1000, 1000).map(lambda v: v / 4),
    st.sampled_from([0, 1, 2, 6]),  # GOOD, UNCERTAIN, BAD, BAD + time untrusted
)


def _dedupe(bs: list[list[tuple[int, int, float, int]]]) -> list[list[tuple[int, int, float, int]]]:
    """One reading per (series, timestamp) over all batches: a series has one value per instant."""
    seen: set[tuple[int, int]] = set()
    out = []
    for b in bs:
        kept = []
        for r in b:
            if (r[0], r[1]) not in seen:
                seen.add((r[0], r[1]))
                kept.append(r)
        if kept:
            out.append(kept)
    return out


batches = st.lists(st.lists(reading, min_size=1, max_size=40), min_size=1, max_size=6).map(_dedupe)


def _frozen(device: str, seq: int, prev: bytes, rows: list[tuple[int, int, float, int]]) -> Frozen:
    series = []
    for i, key in enumerate(KEYS):
        s = SeriesData(key)
        for _, ts, value, quality in sorted(r for r in rows if r[0] == i):
            s.append(DAY0 + ts, value, quality)
        if s.ts_ms:
            series.append(s)
    batch = Batch(
        device, seq, prev, "boot-1", series=series, clock=ClockReport(ClockState.SYNCED, 0)
    )
    body = encode_batch(batch)
    return Frozen(batch, body, batch_digest(body))


def _expected(rows: list[tuple[int, float, int]], bucket: int, agg: Agg) -> dict[int, float]:
    groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for ts, value, quality in rows:
        if quality & 3 != 2:
            groups[(ts // bucket) * bucket].append((ts, value))
    out = {}
    for b, g in groups.items():
        values = [v for _, v in g]
        out[b] = {
            Agg.AVG: sum(values) / len(values),
            Agg.MIN: min(values),
            Agg.MAX: max(values),
            Agg.SUM: sum(values),
            Agg.COUNT: float(len(values)),
            Agg.LAST: max(g)[1],
        }[agg]
    return out


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bs=batches, edge=st.integers(1, HOUR_MS - 1))
async def test_rollups_equal_raw_aggregates_after_out_of_order_batches(
    store: Store, bs: list[list[tuple[int, int, float, int]]], edge: int
) -> None:
    gw = Gateway(f"gw-roll-{next(_devices)}")  # a new device, so new series, per example
    await register(store, gw)
    prev = GENESIS
    sent: dict[int, list[tuple[int, float, int]]] = defaultdict(list)
    for seq, rows in enumerate(bs, start=1):
        frozen = _frozen(gw.device_id, seq, prev, rows)
        result = await store.store_batch(gw.meta(frozen), frozen.batch)
        assert result.outcome is Outcome.STORED
        prev = frozen.digest
        for i, ts, value, quality in rows:
            sent[i].append((DAY0 + ts, value, quality))
    ids = {
        s.metric: s.series_id for s in await store.list_series(SeriesFilter(device=gw.device_id))
    }
    ranges = [(DAY0, DAY0 + SPAN_MS), (DAY0 + edge, DAY0 + SPAN_MS - edge)]
    for (i, key), bucket, (lo, hi), agg in itertools.product(
        enumerate(KEYS), (HOUR_MS, 2 * HOUR_MS, DAY_MS), ranges, list(Agg)
    ):
        if key.metric not in ids:
            continue
        sid = ids[key.metric]
        want = _expected([r for r in sent[i] if lo <= r[0] < hi], bucket, agg)
        got = {p.ts_ms: p.value for p in await store.buckets(sid, lo, hi, bucket, agg)}
        raw = {p.ts_ms: p.value for p in await store._raw_buckets(sid, lo, hi, bucket, agg)}  # type: ignore[attr-defined]
        assert got.keys() == want.keys() == raw.keys(), (bucket, agg, lo, hi)
        for b in want:
            assert math.isclose(got[b], want[b], rel_tol=1e-9, abs_tol=1e-9), (b, agg)
            assert math.isclose(raw[b], want[b], rel_tol=1e-9, abs_tol=1e-9), (b, agg)
    # the counter columns, row by row (PostgreSQL's trigger builds the daily rows from hourly ones)
    for (i, key), (table, size) in itertools.product(enumerate(KEYS), LEVELS):
        if key.metric not in ids:
            continue
        sid = ids[key.metric]
        ph = "%s" if store.kind == "postgres" else "?"
        stored = {
            int(r[0]): r[1:]
            for r in await store._fetch_rows(  # type: ignore[attr-defined]
                f"SELECT bucket_ms, {', '.join(COLUMNS)} FROM {table} WHERE series_id = {ph}",
                (sid,),
            )
        }
        expected = aggregate(sorted((sid, t, v, q) for t, v, q in sent[i]), size)
        assert stored.keys() == {b for _, b in expected}
        for (_, b), p in expected.items():
            row = p.columns()
            assert tuple(stored[b][:1]) + tuple(stored[b][2:8]) == row[:1] + row[2:8]
            assert tuple(stored[b][8:13]) + (stored[b][14],) == row[8:13] + row[14:]
            # rising is never claimed falsely; interleaved batches may only lose the claim
            assert not stored[b][13] or row[13]


def test_segments_cover_the_range_with_the_coarsest_whole_units() -> None:
    lo, hi = DAY0 + 5 * 60_000, DAY0 + 2 * DAY_MS + HOUR_MS + 7
    assert segments(lo, hi, DAY_MS) == [
        (None, lo, DAY0 + HOUR_MS),
        ("reading_hourly", DAY0 + HOUR_MS, DAY0 + DAY_MS),
        ("reading_daily", DAY0 + DAY_MS, DAY0 + 2 * DAY_MS),
        ("reading_hourly", DAY0 + 2 * DAY_MS, DAY0 + 2 * DAY_MS + HOUR_MS),
        (None, DAY0 + 2 * DAY_MS + HOUR_MS, hi),
    ]
    assert segments(lo, hi, 2 * HOUR_MS)[1] == ("reading_hourly", DAY0 + HOUR_MS, hi - 7)
    assert segments(lo, lo + 10, HOUR_MS) == [(None, lo, lo + 10)]


@given(
    st.lists(
        st.tuples(
            st.integers(1, 3),
            st.integers(-3 * HOUR_MS, 3 * HOUR_MS),
            st.integers(-50, 50).map(float),
            st.sampled_from([0, 1, 2, 6]),
        ),
        max_size=60,
        unique_by=lambda r: (r[0], r[1]),
    )
)
# truncating division: -1 h - 5 ms is in bucket -1 h, -5 ms in bucket 0, not the same one
@example([(1, -HOUR_MS - 5, 1.0, 0), (1, -5, 2.0, 0)])
def test_aggregate_in_any_order_equals_the_naive_aggregate(rows) -> None:
    got = aggregate(rows, HOUR_MS)
    groups: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    usable: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    excluded: dict[tuple[int, int], int] = defaultdict(int)
    for sid, ts, value, quality in rows:
        b = int(ts / HOUR_MS) * HOUR_MS  # SQL's truncating division, as the raw query
        if quality & 3 != 2:
            groups[(sid, b)].append((ts, value))
        if quality in (0, 1):
            usable[(sid, b)].append((ts, value))
        else:
            excluded[(sid, b)] += 1
    assert {k for k, p in got.items() if p.n > 0} == set(groups)
    assert set(got) == set(groups) | set(excluded)
    for key, g in groups.items():
        p = got[key]
        values = [v for _, v in g]
        assert (p.n, p.total, p.lo, p.hi) == (len(g), sum(values), min(values), max(values))
        assert (p.first_ts_ms, p.first_value) == min(g)
        assert (p.last_ts_ms, p.last_value) == max(g)
    for key, p in got.items():
        u = sorted(usable[key])
        assert (p.u_n, p.x_n) == (len(u), excluded[key])
        if u:
            assert (p.u_first_ts_ms, p.u_first_value) == u[0]
            assert (p.u_last_ts_ms, p.u_last_value) == u[-1]
        # rising is never claimed falsely; readings out of order may only lose the claim
        assert not p.u_rising or all(a[1] <= b[1] for a, b in itertools.pairwise(u))
    for key, p in aggregate(sorted(rows, key=lambda r: r[1]), HOUR_MS).items():
        u = sorted(usable[key])
        assert p.u_rising == all(a[1] <= b[1] for a, b in itertools.pairwise(u))


async def test_latest_is_the_newest_reading_bad_or_not_on_any_day(store: Store) -> None:
    gw = Gateway("gw-latest")
    await register(store, gw)
    prev = GENESIS
    # series 0: good readings two days ago, a BAD one today (newest); series 1: only BAD
    batches = [[(0, 0, 1.0, 0), (1, 5, 3.0, 2)], [(0, 2 * DAY_MS + 7, 2.0, 2)]]
    for seq, rows in enumerate(batches, start=1):
        frozen = _frozen(gw.device_id, seq, prev, rows)
        assert (await store.store_batch(gw.meta(frozen), frozen.batch)).outcome is Outcome.STORED
        prev = frozen.digest
    got = {
        lv.series.metric: (lv.ts_ms - DAY0, lv.value, lv.quality)
        for lv in await store.latest(SeriesFilter(device=gw.device_id))
    }
    assert got == {"m0": (2 * DAY_MS + 7, 2.0, 2), "m1": (5, 3.0, 2)}
