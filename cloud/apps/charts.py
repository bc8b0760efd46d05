"""Server-rendered SVG charts for the dashboard: strings in, SVG out, no I/O, no script.

Every text that reaches the SVG goes through `esc`. Charts scale to their container
(`viewBox`, width 100 %); colours are attributes, not inline styles, so the page's
Content-Security-Policy can forbid inline styles. Each bar has a `<title>`: hovering shows
the exact value without any script. Charts carry `data-chart` and bars `data-value` so
tests (and people reading the DOM) can find the numbers.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

MEDIUM_COLOURS = {
    "electricity": "#d99a00",
    "water": "#1f77b4",
    "gas": "#d95f02",
    "steam": "#7f7f7f",
    "air": "#17a2b8",
    "material": "#8c564b",
}
DEFAULT_COLOUR = "#6a51a3"
GRID = "#e3e6ea"
AXIS_TEXT = "#5b6470"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# How a stored unit symbol is shown: gateways send ASCII spellings (`m3`, `Nm3`, `degC`) or
# UCUM codes (`Cel`, `kW.h`, `[degF]`, `{lqi}`: ucum.org), the figures already sum into `m³`,
# and one page must not show two spellings of one unit. Display only: the stored symbol, the
# APIs and `data-` attributes keep what the gateway sent.
UNIT_LABELS = {
    "degC": "°C",
    "Cel": "°C",
    "degF": "°F",
    "[degF]": "°F",
    "deg": "°",
    "degree": "°",
    "ohm": "Ω",
    "us": "µs",
    "ug/m3": "µg/m³",
    "[car_m]": "ct",
    "[lton_av]": "long ton",
    "{lqi}": "LQI",
}
_POWERS = re.compile(r"(?<=[A-Za-z])([23])(?![0-9])")
_UCUM_PRODUCT = re.compile(r"(?<=[A-Za-z])\.(?=[A-Za-z])")  # kW.h, V.A: a product of units
_UCUM_SPECIAL = re.compile(r"\[([a-z]+)(?:_[a-z]+)?\]|\{([^}]*)\}")  # [lb_av] -> lb, {pcs}


def unit_label(unit: str) -> str:
    """The spelling of `unit` on the page: `m3` -> `m³`, `Nm3/h` -> `Nm³/h`, `degC` and `Cel` ->
    `°C`, `kW.h` -> `kWh`, `[ppm]` -> `ppm`."""
    unit = unit.strip()
    if unit in UNIT_LABELS:
        return UNIT_LABELS[unit]
    unit = _UCUM_SPECIAL.sub(lambda m: m.group(1) or m.group(2), unit)
    unit = _UCUM_PRODUCT.sub("", unit)
    return _POWERS.sub(lambda m: "²" if m.group(1) == "2" else "³", unit)


def colour(medium: str) -> str:
    return MEDIUM_COLOURS.get(medium, DEFAULT_COLOUR)


def fmt(value: float | None, unit: str = "") -> str:
    """A number for people: grouped thousands, decimals by magnitude, then the unit."""
    if value is None or not math.isfinite(value):
        return "–"
    size = abs(value)
    digits = 0 if size >= 1000 else 1 if size >= 10 else 2
    text = f"{value:,.{digits}f}"
    if text in ("-0", "-0.0", "-0.00"):
        text = text[1:]
    return f"{text} {unit}".strip()


def nice_ticks(value: float) -> list[float]:
    """Axis ticks from 0 to at least `value` in 3 to 5 steps of 1, 2 or 5 times a power of ten."""
    if value <= 0 or not math.isfinite(value):
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    raw = value / 4
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)
    n = max(1, math.ceil(value / step - 1e-9))
    return [step * i for i in range(n + 1)]


def fmt_tick(value: float, step: float) -> str:
    digits = 0 if step >= 1 else min(6, math.ceil(-math.log10(step)))
    return f"{value:,.{digits}f}"


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # axis label ("" to leave the slot unlabelled)
    value: float | None  # None: no data
    status: str = "complete"  # complete | partial | gap | future
    title: str = ""  # hover text


def _hatch_id(chart: str) -> str:
    return "hatch-" + "".join(c if c.isalnum() else "-" for c in chart)


def _svg(width: int, height: int, body: list[str], chart: str, label: str) -> str:
    return (
        f'<svg class="chart" data-chart="{esc(chart)}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
        f'<defs><pattern id="{_hatch_id(chart)}" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4f5f7"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#b9c0c8" stroke-width="2"/></pattern></defs>'
        + "".join(body)
        + "</svg>"
    )


def _y_axis(
    body: list[str], ticks: list[float], x0: int, x1: int, y0: int, y1: int, unit: str
) -> None:
    top = ticks[-1]
    step = ticks[1] - ticks[0]
    for value in ticks:
        y = y1 - (y1 - y0) * value / top
        body.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11"'
            f' fill="{AXIS_TEXT}">{esc(fmt_tick(value, step))}</text>'
        )
    body.append(
        f'<text x="{x0 - 6}" y="{y0 - 10}" text-anchor="end" font-size="11"'
        f' fill="{AXIS_TEXT}">{esc(unit)}</text>'
    )


def bar_chart(bars: Sequence[Bar], *, unit: str, colour: str, chart: str, label: str) -> str:
    """Vertical bars: complete ones solid, partial ones pale with a dashed outline, gaps as a
    hatched slot marked "no data" (never a zero bar), future slots empty."""
    width, height = 560, 220
    x0, x1, y0, y1 = 56, width - 8, 24, height - 28
    ticks = nice_ticks(max((b.value or 0.0 for b in bars), default=0.0))
    top = ticks[-1]
    body: list[str] = []
    _y_axis(body, ticks, x0, x1, y0, y1, unit)
    slot = (x1 - x0) / max(1, len(bars))
    bar_w = max(2.0, slot * 0.72)
    for i, b in enumerate(bars):
        x = x0 + i * slot + (slot - bar_w) / 2
        title = esc(b.title or f"{b.label}: {fmt(b.value, unit)}")
        if b.status == "gap":
            body.append(
                f'<rect class="bar gap" x="{x:.1f}" y="{y0}" width="{bar_w:.1f}"'
                f' height="{y1 - y0}" fill="url(#{_hatch_id(chart)})" data-value=""><title>{title}'
                " (no data)</title></rect>"
            )
        elif b.value is not None and b.status != "future":
            h = (y1 - y0) * max(0.0, b.value) / top
            partial = b.status == "partial"
            extra = ' fill-opacity="0.45" stroke-dasharray="3 2"' if partial else ""
            body.append(
                f'<rect class="bar {esc(b.status)}" x="{x:.1f}" y="{y1 - h:.1f}"'
                f' width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" fill="{colour}"'
                f' stroke="{colour}"{extra} data-value="{b.value!r}"><title>{title}'
                f"{' (incomplete)' if partial else ''}</title></rect>"
            )
        if b.label:
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y1 + 16}" text-anchor="middle"'
                f' font-size="11" fill="{AXIS_TEXT}">{esc(b.label)}</text>'
            )
    body.append(f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#9aa3ad"/>')
    return _svg(width, height, body, chart, label)


def hbar_chart(
    items: Sequence[tuple[str, float, str]], *, unit: str, colour: str, chart: str, label: str
) -> str:
    """Horizontal bars, one per (label, value, note), biggest first as given."""
    row = 30
    width = 560
    height = 12 + row * max(1, len(items))
    x0, x1 = 150, width - 150
    top = max((v for _, v, _ in items), default=0.0) or 1.0
    body: list[str] = []
    for i, (name, value, note) in enumerate(items):
        y = 6 + i * row
        w = (x1 - x0) * max(0.0, value) / top
        body.append(
            f'<text x="{x0 - 8}" y="{y + 17}" text-anchor="end" font-size="13"'
            f' fill="#24292f">{esc(_clip(name, 20))}</text>'
            f'<rect class="bar" x="{x0}" y="{y + 4}" width="{max(w, 1.0):.1f}" height="{row - 10}"'
            f' rx="2" fill="{colour}" data-value="{value!r}"><title>{esc(name)}:'
            f" {esc(fmt(value, unit))}</title></rect>"
            f'<text x="{x0 + w + 8:.1f}" y="{y + 17}" font-size="13" font-weight="600"'
            f' fill="#24292f">{esc(fmt(value, unit))}'
            f'<tspan font-weight="400" fill="{AXIS_TEXT}"> {esc(note)}</tspan></text>'
        )
    return _svg(width, height, body, chart, label)


def line_chart(
    points: Sequence[tuple[int, float, float, float]],
    *,
    x_labels: Sequence[tuple[int, str]],
    span: tuple[int, int],
    unit: str,
    colour: str,
    chart: str,
    label: str,
    empty: str = "no readings in the last 24 hours",
) -> str:
    """A line of averages over a min-max band; `points` are (ts_ms, avg, min, max) in order,
    `x_labels` (ts_ms, text) tick marks. A jump of more than three buckets breaks the line; a
    point alone (fresh data, or one between gaps) is drawn as a dot, so it is never invisible."""
    width, height = 560, 220
    x0, x1, y0, y1 = 56, width - 8, 24, height - 28
    lo_t, hi_t = span
    body: list[str] = []
    if not points:
        body.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="13"'
            f' fill="{AXIS_TEXT}">{esc(empty)}</text>'
        )
        return _svg(width, height, body, chart, label)
    low = min(p[2] for p in points)
    high = max(p[3] for p in points)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad

    def sx(t: int) -> float:
        return x0 + (x1 - x0) * (t - lo_t) / max(1, hi_t - lo_t)

    def sy(v: float) -> float:
        return y1 - (y1 - y0) * (v - low) / (high - low)

    step = nice_ticks(high - low)[1]
    v = math.ceil(low / step) * step
    while v <= high:
        y = sy(v)
        body.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11"'
            f' fill="{AXIS_TEXT}">{esc(fmt_tick(v, step))}</text>'
        )
        v += step
    body.append(
        f'<text x="{x0 - 6}" y="{y0 - 10}" text-anchor="end" font-size="11"'
        f' fill="{AXIS_TEXT}">{esc(unit)}</text>'
    )
    for t, text in x_labels:
        body.append(
            f'<text x="{sx(t):.1f}" y="{y1 + 16}" text-anchor="middle" font-size="11"'
            f' fill="{AXIS_TEXT}">{esc(text)}</text>'
        )
    step = min((b[0] - a[0] for a, b in zip(points, points[1:], strict=False)), default=1)
    step = max(step, 1)
    runs: list[list[tuple[int, float, float, float]]] = [[points[0]]]
    for prev, p in zip(points, points[1:], strict=False):
        if p[0] - prev[0] > 3 * step:
            runs.append([])
        runs[-1].append(p)
    for run in runs:
        upper = " ".join(f"{sx(t):.1f},{sy(mx):.1f}" for t, _, _, mx in run)
        lower = " ".join(f"{sx(t):.1f},{sy(mn):.1f}" for t, _, mn, _ in reversed(run))
        line = " ".join(f"{sx(t):.1f},{sy(avg):.1f}" for t, avg, _, _ in run)
        body.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15"/>')
        if len(run) == 1:
            t, avg, _, _ = run[0]
            body.append(
                f'<circle class="trend point" cx="{sx(t):.1f}" cy="{sy(avg):.1f}" r="3.5"'
                f' fill="{colour}"/>'
            )
            continue
        body.append(
            f'<polyline class="trend" points="{line}" fill="none" stroke="{colour}"'
            ' stroke-width="2" stroke-linejoin="round"/>'
        )
    body.append(f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#9aa3ad"/>')
    return _svg(width, height, body, chart, label)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
