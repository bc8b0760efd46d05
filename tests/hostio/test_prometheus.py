"""The Prometheus text format: escaping, values, names, whole families as text."""

from __future__ import annotations

import math

import pytest

from hostio.prometheus import (
    MetricType,
    Sample,
    escape_help,
    escape_label_value,
    format_labels,
    format_value,
    render,
    render_family,
)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("C:\\dir", "C:\\\\dir"),
        ("two\nlines", "two\\nlines"),
        ('\\"', '\\\\\\"'),  # backslash first, then the quote: no double escaping
        ("tab\tand ünïcode", "tab\tand ünïcode"),  # everything else is itself
    ],
)
def test_label_values(raw, escaped):
    assert escape_label_value(raw) == escaped


def test_help_escapes_backslash_and_newline_but_not_quotes():
    assert escape_help('a "quoted" C:\\path\nsecond line') == (
        'a "quoted" C:\\\\path\\nsecond line'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (7, "7"),
        (-12, "-12"),
        (2**63 + 1, "9223372036854775809"),  # an int stays exact
        (1234567.0, "1234567"),  # no exponent, no rounding (`%g` would give 1.23457e+06)
        (0.125, "0.125"),
        (9.2034, "9.2034"),
        (1e-7, "1e-07"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (True, "1"),
    ],
)
def test_values(value, text):
    assert format_value(value) == text


def test_labels_keep_their_order_and_are_escaped():
    assert format_labels(()) == ""
    assert format_labels((("source", 'b"us'), ("counter", "a\\b"))) == (
        '{source="b\\"us",counter="a\\\\b"}'
    )


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "__reserved", "é"])
def test_bad_label_names_are_refused(name):
    with pytest.raises(ValueError, match="not a Prometheus label name"):
        format_labels(((name, "x"),))


@pytest.mark.parametrize("name", ["", "9lives", "a-b", "a b"])
def test_bad_metric_names_are_refused(name):
    with pytest.raises(ValueError, match="not a Prometheus metric name"):
        render_family(name, MetricType.GAUGE, "help", [])


def test_a_whole_exposition():
    counter = render_family(
        "jobs_total",
        MetricType.COUNTER,
        "Jobs done.\nBy queue.",
        [Sample(3, (("queue", "a"),)), Sample(1.5, (("queue", 'q"2'),))],
    )
    histogram = render_family(
        "wait_seconds",
        MetricType.HISTOGRAM,
        "Waits.",
        [
            Sample(1, (("le", "0.5"),), "_bucket"),
            Sample(2, (("le", "+Inf"),), "_bucket"),
            Sample(0.75, (), "_sum"),
            Sample(2, (), "_count"),
        ],
    )
    assert render([counter, histogram]) == (
        "# HELP jobs_total Jobs done.\\nBy queue.\n"
        "# TYPE jobs_total counter\n"
        'jobs_total{queue="a"} 3\n'
        'jobs_total{queue="q\\"2"} 1.5\n'
        "# HELP wait_seconds Waits.\n"
        "# TYPE wait_seconds histogram\n"
        'wait_seconds_bucket{le="0.5"} 1\n'
        'wait_seconds_bucket{le="+Inf"} 2\n'
        "wait_seconds_sum 0.75\n"
        "wait_seconds_count 2\n"
    )
    assert render([]) == ""
