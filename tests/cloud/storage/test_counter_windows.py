"""Counter windows from the roll-ups (`ReadStore.counter_windows`) on both backends: the figures
computed from them equal, rule for rule, the figures computed from the raw readings
(`series_windows`), for counters with rollovers, resets, excursions, jitter, unusable readings
and gaps, sent in batches that arrive late and out of order."""

from __future__ import annotations

import itertools
import math
import random
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud.apps import figures
from cloud.apps.figures import CounterPolicy, Figure, Interval, Trace
from cloud.storage.batches import Outcome
from cloud.storage.reads import SeriesFilter
from cloud.storage.rollups import DAY_MS, HOUR_MS
from cloud.storage.store import Store
from cloud.storage.windows import HourSummary, compressible
from tests.cloud.helpers import START_MS, Frozen, Gateway, register
from wire.codec import batch_digest, encode_batch
from wire.models import GENESIS, Batch, ClockReport, ClockState, SeriesData, SeriesKey

UTC = ZoneInfo("UTC")
DAY0 = (START_MS // DAY_MS) * DAY_MS
SPAN_H = 10
KEY = SeriesKey("energy_import", "kWh", "site", "hall", "proc", "electricity")
_devices = itertools.count()

# What happens to the register before a reading is sent: mostly it rises.
OPS = ["rise"] * 12 + ["same", "jitter", "low", "high", "reset", "jump"]
step = st.tuples(
    st.integers(0, SPAN_H * 3600 - 1),  # seconds into the span
    st.sampled_from(OPS),
    st.integers(0, 40),  # the rise, in quarters
    st.sampled_from([0] * 6 + [1, 2, 4, 6]),  # quality: GOOD, UNCERTAIN, BAD, untrusted time
)
series_steps = st.lists(step, min_size=1, max_size=150, unique_by=lambda s: s[0])


def _readings(start: float, steps: list[tuple[int, str, int, int]]) -> list[tuple[int, float, int]]:
    """The register read at each step's instant; `start` near 1000 makes it wrap at 10^3."""
    register = start
    out = []
    for second, op, rise, quality in sorted(steps):
        register += rise / 4
        value = register % 1000.0 if start >= 900 else register
        if op == "jitter":
            value -= abs(value) * 1e-7
        elif op == "low":
            value *= 0.5
        elif op == "high":
            value = value * 3 + 100
        elif op == "reset":
            register = value = float(rise)
        elif op == "jump":
            register += 5000
            value = register
        out.append((DAY0 + second * 1000, value, quality))
    return out


def _frozen(device: str, seq: int, prev: bytes, rows: list[tuple[int, float, int]]) -> Frozen:
    s = SeriesData(KEY)
    for ts, value, quality in sorted(rows):
        s.append(ts, value, quality)
    batch = Batch(device, seq, prev, "boot-1", series=[s], clock=ClockReport(ClockState.SYNCED, 0))
    body = encode_batch(batch)
    return Frozen(batch, body, batch_digest(body))


async def _stored(store: Store, rows: list[tuple[int, float, int]], shuffle: int) -> int:
    """Store `rows` in up to four batches sent in a shuffled order (late and out of order): for
    an even `shuffle` each batch is a stretch of time, for an odd one readings from anywhere
    (batches interleaved within an hour). The series id."""
    gw = Gateway(f"gw-cw-{next(_devices)}")  # a new device, so a new series, per example
    await register(store, gw)
    rng = random.Random(shuffle)
    n = 1 + shuffle // 2 % 4
    parts: list[list[tuple[int, float, int]]] = [[] for _ in range(n)]
    if shuffle % 2:
        for r in rows:
            parts[rng.randrange(n)].append(r)
    else:
        cuts = sorted(rng.randrange(len(rows) + 1) for _ in range(n - 1))
        parts = [rows[a:b] for a, b in itertools.pairwise([0, *cuts, len(rows)])]
        rng.shuffle(parts)
    prev = GENESIS
    for seq, part in enumerate((p for p in parts if p), start=1):
        frozen = _frozen(gw.device_id, seq, prev, part)
        assert (await store.store_batch(gw.meta(frozen), frozen.batch)).outcome is Outcome.STORED
        prev = frozen.digest
    (info,) = await store.list_series(SeriesFilter(device=gw.device_id))
    return info.series_id


async def _both(
    store: Store, sid: int, from_ms: int, to_ms: int, policy: CounterPolicy, *, probe_after: bool
) -> tuple[Trace, Trace, int, int]:
    """The trace from raw windows and from counter windows, and how many rows each held."""
    (raw_chunk,) = [
        c
        async for c in store.series_windows(
            [sid],
            from_ms,
            to_ms,
            context_ms=policy.context_ms,
            budget_rows=10**6,
            probe_after=probe_after,
        )
    ]
    (cw_chunk,) = [
        c
        async for c in store.counter_windows(
            [sid],
            from_ms,
            to_ms,
            context_ms=policy.context_ms,
            excursion_ms=policy.excursion_ms,
            budget_rows=10**6,
            probe_after=probe_after,
        )
    ]
    ((_, raw_rows),) = raw_chunk
    (window,) = cw_chunk
    raw = figures.clean_counter(raw_rows, policy)
    rolled = figures.clean_counter(window.rows, policy)
    rolled.excluded += window.excluded
    return raw, rolled, len(raw_rows), len(window.rows)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def _assert_same(raw: Trace, rolled: Trace, fr: Figure, fc: Figure) -> None:
    assert (rolled.excluded, rolled.excursions) == (raw.excluded, raw.excursions)
    assert {rolled.ts[i]: m for i, m in rolled.breaks.items()} == {
        raw.ts[i]: m for i, m in raw.breaks.items()
    }
    assert rolled.ts[:1] == raw.ts[:1]
    assert rolled.ts[-1:] == raw.ts[-1:]
    assert (fc.boundaries, fc.until_ms) == (fr.boundaries, fr.until_ms)
    assert (fc.covered_ms, fc.spans_ms) == (fr.covered_ms, fr.spans_ms)
    assert all(_close(a, b) for a, b in zip(fc.values, fr.values, strict=True)), (
        fc.values,
        fr.values,
    )
    assert _close(fc.total, fr.total)
    assert _close(fc.unattributed, fr.unattributed)
    assert [(g.from_ms, g.to_ms, g.reset) for g in fc.gaps] == [
        (g.from_ms, g.to_ms, g.reset) for g in fr.gaps
    ]
    assert all(_close(a.consumption, b.consumption) for a, b in zip(fc.gaps, fr.gaps, strict=True))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=series_steps,
    start=st.sampled_from([0.0, 950.0, 65_000.0]),
    shuffle=st.integers(0, 1000),
    window=st.sampled_from([(2, 8), (0, 10), (4, 5)]),  # [from, to) in hours into the span
    until_h=st.sampled_from([3, 6, 11]),
    max_step_h=st.sampled_from([0, 2]),  # 0: the default 15 minutes
)
@example(  # a spike that ends an hour, undone at the start of the next: the look-back
    steps=[(s, "rise", 4, 0) for s in range(0, SPAN_H * 3600, 300) if s != 10_500]
    + [(10_500, "high", 4, 0)],  # 2:55
    start=0.0,
    shuffle=0,
    window=(2, 8),
    until_h=11,
    max_step_h=0,
)
@example(  # the same after a reset, split into stretches sent out of order
    steps=[(s, "rise", 4, 0) for s in range(0, SPAN_H * 3600, 300) if s not in (3600, 10_500)]
    + [(3600, "reset", 2, 0), (10_500, "high", 4, 0)],
    start=950.0,
    shuffle=4,
    window=(0, 10),
    until_h=6,
    max_step_h=2,
)
async def test_counter_windows_give_the_figures_of_the_raw_readings(
    store: Store, steps, start, shuffle, window, until_h, max_step_h
) -> None:
    rows = _readings(start, steps)
    sid = await _stored(store, rows, shuffle)
    policy = CounterPolicy(max_step_ms=max_step_h * HOUR_MS or 15 * 60_000)
    from_ms, to_ms = DAY0 + window[0] * HOUR_MS, DAY0 + window[1] * HOUR_MS
    until_ms = DAY0 + until_h * HOUR_MS
    probe_after = to_ms + policy.context_ms < until_ms
    raw, rolled, _, _ = await _both(store, sid, from_ms, to_ms, policy, probe_after=probe_after)
    for interval in (Interval.HOUR, Interval.TOTAL):
        b = figures.grid(from_ms, to_ms, interval, UTC)
        kwargs = {"until_ms": until_ms, "max_step_ms": policy.max_step_ms}
        _assert_same(
            raw, rolled, figures.attribute(raw, b, **kwargs), figures.attribute(rolled, b, **kwargs)
        )


async def test_a_clean_counter_is_read_as_two_rows_an_hour(store: Store) -> None:
    steps = [(s, "rise", 1 + s % 7, 0) for s in range(0, SPAN_H * 3600, 60)]  # one a minute
    sid = await _stored(store, _readings(0.0, steps), shuffle=6)  # 4 stretches, out of order
    policy = CounterPolicy()
    from_ms, to_ms = DAY0 + 2 * HOUR_MS, DAY0 + 8 * HOUR_MS
    raw, rolled, n_raw, n_rolled = await _both(store, sid, from_ms, to_ms, policy, probe_after=True)
    assert n_raw == 8 * 60 + 2  # [1 h, 9 h) and the two probes
    assert n_rolled == 8 * 2 + 2
    b = figures.grid(from_ms, to_ms, Interval.HOUR, UTC)
    kwargs = {"until_ms": DAY0 + DAY_MS, "max_step_ms": policy.max_step_ms}
    _assert_same(
        raw, rolled, figures.attribute(raw, b, **kwargs), figures.attribute(rolled, b, **kwargs)
    )


def _hour(b: int, first: float, last: float, *, rising: bool = True) -> HourSummary:
    return HourSummary(1, b * HOUR_MS, max(first, last), 2, b * HOUR_MS, first, b * HOUR_MS + 1,
                       last, rising, 0)  # fmt: skip


def test_compressible_keeps_a_margin_around_every_dirty_hour() -> None:
    hours = [_hour(b, 10.0 * b, 10.0 * b + 5) for b in range(8)]
    assert compressible(hours, None, None, 1) == {h.bucket_ms for h in hours}
    hours[4] = _hour(4, 40.0, 45.0, rising=False)
    assert compressible(hours, None, None, 1) == {b * HOUR_MS for b in (0, 1, 2, 6, 7)}
    # a first reading below an earlier hour's readings is a drop: dirty
    hours[4] = _hour(4, 30.0, 45.0)
    assert compressible(hours, None, None, 1) == {b * HOUR_MS for b in (0, 1, 2, 6, 7)}
    hours[4] = _hour(4, 40.0, 45.0)
    # below the probe before the window, until the register passes it
    assert compressible(hours, 41.0, None, 1) == {6 * HOUR_MS, 7 * HOUR_MS}
    assert compressible(hours, None, 1.0, 2) == {b * HOUR_MS for b in (0, 1, 2, 3, 4, 5)}
