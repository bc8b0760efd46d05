"""The Prometheus text exposition format (version 0.0.4), written; used by the agent's and the
receiver's `/metrics`.

Invariants of what `render_family` writes:
- one family is `# HELP name text`, `# TYPE name kind`, then its samples, one line each; the
  caller's order of samples is kept (sort them for a stable scrape);
- HELP text escapes `\\` and newline; label values escape `\\`, `"` and newline. Nothing else
  is escaped: the format is UTF-8, and any other character is itself;
- metric and label names are checked against the format's grammar (a bad name is a bug in the
  caller, so it raises ValueError rather than writing a line scrapers would reject);
- values: integers exactly as integers (no float rounding, no exponent), other floats as
  Python's shortest round-trip repr, and the format's spellings `+Inf`, `-Inf`, `NaN`.
A whole exposition is families joined by newlines, ending in one (`render`).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Labels = Sequence[tuple[str, str]]


class MetricType(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"
    UNTYPED = "untyped"


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of a family: `labels` in the order given, `suffix` for a histogram's
    `_bucket`, `_sum` and `_count` lines."""

    value: float
    labels: Labels = ()
    suffix: str = ""


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the format spells it (see the module docstring)."""
    if isinstance(value, int):
        return str(int(value))  # bool too: True is 1
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer():
        return str(int(value))
    return repr(value)


def format_labels(labels: Labels) -> str:
    """`{a="x",b="y"}`, or "" for no labels; ValueError for a name the format does not allow."""
    if not labels:
        return ""
    for name, _ in labels:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"not a Prometheus label name: {name!r}")
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)
    return "{" + inner + "}"


def render_family(
    name: str, kind: MetricType, help_text: str, samples: Iterable[Sample]
) -> list[str]:
    """The lines of one metric family: HELP, TYPE, then a line per sample."""
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"not a Prometheus metric name: {name!r}")
    lines = [f"# HELP {name} {escape_help(help_text)}", f"# TYPE {name} {kind}"]
    for sample in samples:
        full = name + sample.suffix
        if not _METRIC_NAME.fullmatch(full):
            raise ValueError(f"not a Prometheus metric name: {full!r}")
        lines.append(f"{full}{format_labels(sample.labels)} {format_value(sample.value)}")
    return lines


def render(families: Iterable[Sequence[str]]) -> str:
    """A whole exposition from rendered families."""
    return "".join(line + "\n" for family in families for line in family)
