"""Hypothesis strategies for random valid batches."""

from __future__ import annotations

from hypothesis import strategies as st

from wire.models import (
    MAX_TS_MS,
    MIN_TS_MS,
    VALID_QUALITY_CODES,
    Batch,
    ClockReport,
    ClockState,
    Counters,
    Event,
    SeriesData,
    SeriesKey,
)

printable = st.characters(codec="utf-8", categories=("L", "N", "P", "S"), include_characters=" ")
names = st.text(alphabet=printable, min_size=1, max_size=20)
tags = st.one_of(st.just(""), names)
timestamps = st.integers(MIN_TS_MS, MAX_TS_MS)
finite = st.floats(allow_nan=False, allow_infinity=False)
decimal_values = st.integers(-(10**12), 10**12).flatmap(
    lambda i: st.sampled_from([i / 10, i / 100, float(i), i / 1000])
)
qualities = st.sampled_from(sorted(VALID_QUALITY_CODES))


@st.composite
def series(draw: st.DrawFn, key: SeriesKey) -> SeriesData:
    n = draw(st.integers(1, 40))
    values = st.one_of(decimal_values, finite)
    s = SeriesData(key)
    for _ in range(n):
        s.append(draw(timestamps), draw(values), draw(qualities))
    return s


series_keys = st.builds(SeriesKey, names, tags, tags, tags, tags, tags)
attr_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    finite,
    st.text(alphabet=printable, max_size=30),
)
events = st.builds(
    Event,
    names,
    timestamps,
    st.lists(st.tuples(names, attr_values), max_size=5, unique_by=lambda p: p[0]).map(tuple),
    qualities,
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    keys = draw(st.lists(series_keys, max_size=6, unique=True))
    return Batch(
        device_id=draw(names),
        seq=draw(st.integers(1, 2**63 - 1)),
        prev=draw(st.binary(min_size=32, max_size=32)),
        boot_id=draw(names),
        series=[draw(series(k)) for k in keys],
        events=draw(st.lists(events, max_size=4)),
        counters=Counters(*draw(st.tuples(*[st.integers(0, 2**63 - 1)] * 3))),
        clock=ClockReport(draw(st.sampled_from(ClockState)), draw(st.integers(-(10**12), 10**12))),
        config_version=draw(st.one_of(st.just(""), names)),
    )
