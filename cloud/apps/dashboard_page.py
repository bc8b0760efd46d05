"""The dashboard's HTML: the page shell, the sign-in page and the content that refreshes.

Pure rendering from `cloud.apps.overview.Overview`; every string from a gateway (names, tags,
materials, lots) is escaped (`charts.esc`). No inline script or style: the page's CSP forbids
both, and colours come from classes or SVG attributes. Numbers that tests and people look for
carry `data-` attributes with the exact value next to the rounded text. Units are shown through
`charts.unit_label` (one spelling on the page: `m³`, never `m3` beside it); `data-` attributes
keep the stored symbol.

The day's figures say "with gaps" only for time a meter should have covered: the part of the day
before a series' first reading ever is not a gap (`data_began`), so a meter installed at 10:17
does not raise an alarm for 00:00-10:17.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cloud.apps import charts, figures
from cloud.apps.charts import Bar, esc, fmt, unit_label
from cloud.apps.figures import Figure, Status
from cloud.apps.gateways_page import STALE_MS, ago, gateways
from cloud.apps.overview import Overview, Trend, TrendRange
from cloud.apps.query import GroupResult, SeriesResult
from cloud.storage.reads import SeriesInfo

MEDIUM_ORDER = ("electricity", "water", "gas", "steam", "air")
QUALITY = {0: "good", 1: "uncertain", 2: "bad"}


def _local(ts_ms: int, tz: ZoneInfo, pattern: str = "%H:%M") -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(tz).strftime(pattern)


def _title(text: str) -> str:
    return text[:1].upper() + text[1:] if text else "(no medium)"


def _ordered(groups: Sequence[GroupResult]) -> list[GroupResult]:
    """Electricity, water, gas, steam, air, then the rest by name; one unit after another."""

    def key(g: GroupResult) -> tuple[int, str, str]:
        medium = g.key.get("medium", "")
        rank = MEDIUM_ORDER.index(medium) if medium in MEDIUM_ORDER else len(MEDIUM_ORDER)
        return (rank, medium, g.unit)

    return sorted(groups, key=key)


def _medium_class(medium: str) -> str:
    return f"m-{medium}" if medium in charts.MEDIUM_COLOURS else "m-other"


def page(content: str, *, refresh_ms: int, sites: Sequence[str] = ()) -> str:
    where = "Plant overview" + (f" · {esc(', '.join(sites))}" if sites else "")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tierless · plant overview</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head>
<body data-refresh-ms="{refresh_ms}">
<header class="top">
<div class="brand">Tierless</div>
<div class="where">{where}</div>
<div id="refresh-status" class="status ok" aria-live="polite">live</div>
<form method="post" action="/logout"><button class="link" type="submit">Sign out</button></form>
</header>
<main id="content">{content}</main>
</body>
</html>
"""


def sign_in_page(message: str = "") -> str:
    note = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tierless · sign in</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body class="signin">
<form class="card signin-card" method="post" action="/login">
<h1>Tierless</h1>
<p>This dashboard needs a viewer token (the read token works too).</p>
{note}
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""


def content(o: Overview, trend: Trend, ranges: Sequence[TrendRange] = ()) -> str:
    parts = []
    if o.notice:
        parts.append(f'<p class="notice">{esc(o.notice)}</p>')
    parts.append(_kpis(o))
    parts.append('<div class="grid">')
    parts.append(_hourly(o))
    parts.append(_by_process(o))
    parts.append(_materials(o))
    parts.append(_trend(o, trend, ranges))
    parts.append(gateways(o))
    parts.append("</div>")
    parts.append(_live(o))
    day = _local(o.day[0], o.tz, "%Y-%m-%d")
    parts.append(
        f'<p class="foot">Updated <span id="updated" data-ms="{o.now_ms}">'
        f"{_local(o.now_ms, o.tz, '%H:%M:%S')}</span> · day {day} ({esc(o.tz.key)}) · "
        "consumption from cumulative meter registers (docs/figures.md)</p>"
    )
    return "\n".join(parts)


def data_began(result: SeriesResult, from_ms: int) -> int | None:
    """When the series' first reading ever was, if after `from_ms` (the start of the window its
    figures were computed on), else None. The window holds the nearest reading before it when
    there is one (`ReadStore.series_windows`), so a first reading inside it is the first ever."""
    ts = result.trace.ts
    return ts[0] if ts and ts[0] > from_ms else None


def status_since_began(parts: Sequence[tuple[Figure, int | None]], k: int) -> Status:
    """The status of interval `k` summed over `parts` (a figure and when its data began, on
    the same boundaries), where the time before data began is not due: neither a gap nor
    incomplete. FUTURE when nothing was due yet."""
    due = covered = 0
    for f, began in parts:
        span = f.spans_ms[k]
        if f.boundaries[k] >= f.until_ms:
            span = 0
        if began is not None:
            span -= max(0, min(began, f.boundaries[k] + span) - f.boundaries[k])
        due += max(0, span)
        covered += min(f.covered_ms[k], max(0, span))
    if due <= 0:
        return Status.FUTURE
    if covered >= due:
        return Status.COMPLETE
    return Status.PARTIAL if covered > 0 else Status.GAP


def _parts(o: Overview, ids: Sequence[int], grid: str) -> list[tuple[Figure, int | None]]:
    wanted = set(ids)
    return [
        (r.figures[grid], data_began(r, r.figures[grid].boundaries[0]))
        for r in o.counters
        if r.info.series_id in wanted
    ]


def _kpis(o: Overview) -> str:
    tiles = []
    for g in _ordered(o.by_medium):
        medium = g.key.get("medium", "")
        day = g.figures["day"]
        value = day.values[0]
        incomplete = sum(
            1
            for part in _parts(o, g.series, "day")
            if status_since_began([part], 0) not in (Status.COMPLETE, Status.FUTURE)
        )
        n = len(g.series)
        note = f"today so far · {n} meter{'s' if n != 1 else ''}"
        warn = ""
        if value is None:
            warn = '<span class="warn">no data today</span>'
        elif incomplete:
            warn = f'<span class="warn">{incomplete} with gaps</span>'
        tiles.append(
            f'<div class="kpi {_medium_class(medium)}" data-kpi="{esc(medium)}|{esc(g.unit)}"'
            f' data-value="{"" if value is None else repr(value)}">'
            f'<div class="kpi-label"><span class="dot"></span>{esc(_title(medium))}</div>'
            f'<div class="kpi-value">{esc(fmt(value))} <span class="unit">{esc(unit_label(g.unit))}'
            "</span>"
            f'</div><div class="kpi-note">{note} {warn}</div></div>'
        )
    total_kg = sum(m.total_kg for m in o.materials.materials)
    tickets = sum(m.total_tickets for m in o.materials.materials)
    tonnes = total_kg / 1000
    tiles.append(
        f'<div class="kpi m-material" data-kpi="material|t" data-value="{tonnes!r}">'
        '<div class="kpi-label"><span class="dot"></span>Material received</div>'
        f'<div class="kpi-value">{esc(fmt(tonnes))} <span class="unit">t</span></div>'
        f'<div class="kpi-note">today · {tickets} ticket{"s" if tickets != 1 else ""}</div></div>'
    )
    if len(tiles) == 1:
        tiles.insert(0, '<div class="kpi empty">No meter counters (kWh, m³, Nm³) yet.</div>')
    return '<section class="kpis">' + "".join(tiles) + "</section>"


def _hour_bars(
    f: Figure, tz: ZoneInfo, unit: str, parts: Sequence[tuple[Figure, int | None]] = ()
) -> list[Bar]:
    """A bar per interval; `parts` (the members and when their data began) make the time
    before data began not count as a gap. Hours, or days when the intervals are longer."""
    bars = []
    n = len(f.boundaries) - 1
    daily = n > 0 and f.boundaries[1] - f.boundaries[0] > 2 * 3_600_000
    for k in range(n):
        start, end = f.boundaries[k], f.boundaries[k + 1]
        local = datetime.fromtimestamp(start / 1000, UTC).astimezone(tz)
        if daily:
            label, span = local.strftime("%a %d"), local.strftime("%a %d %b")
        else:
            hour = local.hour
            label = f"{hour:02d}" if hour % 3 == 0 or n <= 8 else ""
            span = f"{_local(start, tz)}–{_local(end, tz)}"
        status = status_since_began(parts, k) if parts else f.status(k)
        bars.append(
            Bar(
                label=label,
                value=f.values[k],
                status=str(status),
                title=f"{span}: {fmt(f.values[k], unit)}",
            )
        )
    return bars


def _hourly(o: Overview) -> str:
    blocks = []
    for g in _ordered(o.by_medium):
        medium = g.key.get("medium", "")
        unit = unit_label(g.unit)
        name = f"{_title(medium)} · {unit}"
        blocks.append(
            f'<figure class="chart-box"><figcaption>{esc(name)}</figcaption>'
            + charts.bar_chart(
                _hour_bars(g.figures["hour"], o.tz, unit, _parts(o, g.series, "hour")),
                unit=unit,
                colour=charts.colour(medium),
                chart=f"hourly-{medium}-{g.unit}",
                label=f"{name} per hour today",
            )
            + "</figure>"
        )
    body = "".join(blocks) or '<p class="empty">No meter counters yet.</p>'
    legend = (
        '<p class="small legend">Solid: complete · pale: incomplete (a meter had a gap) · '
        "hatched: no data · empty: before the meters' data began · hover a bar for its value</p>"
    )
    return f'<article class="card wide"><h2>Today by hour</h2>{body}{legend}</article>'


def _by_process(o: Overview) -> str:
    per_unit: dict[str, list[tuple[str, float, str]]] = {}
    for g in _ordered(o.by_process):
        value = g.figures["day"].values[0]
        if value is None:
            continue
        medium = g.key.get("medium", "")
        per_unit.setdefault(g.unit, []).append((g.key.get("process") or "—", value, medium))
    blocks = []
    for unit, items in per_unit.items():
        items.sort(key=lambda i: -i[1])
        media = sorted({m for _, _, m in items})
        rows = [(name, value, _title(m) if len(media) > 1 else "") for name, value, m in items]
        shown = unit_label(unit)
        blocks.append(
            f'<figure class="chart-box"><figcaption>{esc(shown)} by process</figcaption>'
            + charts.hbar_chart(
                rows,
                unit=shown,
                colour=charts.colour(media[0] if len(media) == 1 else ""),
                chart=f"process-{unit}",
                label=f"{shown} by process today",
            )
            + "</figure>"
        )
    body = "".join(blocks) or '<p class="empty">No consumption recorded today.</p>'
    return f'<article class="card"><h2>Today by process</h2>{body}</article>'


def _materials(o: Overview) -> str:
    ms = o.materials.materials
    if not ms:
        return (
            '<article class="card"><h2>Raw material received today</h2>'
            '<p class="empty">No weighbridge tickets today.</p></article>'
        )
    in_t = max(m.total_kg for m in ms) >= 1000
    unit, div = ("t", 1000.0) if in_t else ("kg", 1.0)
    rows = [
        (
            m.material,
            m.total_kg / div,
            f"{m.total_tickets} ticket{'s' if m.total_tickets != 1 else ''}",
        )
        for m in ms
    ]
    chart = charts.hbar_chart(
        rows, unit=unit, colour=charts.colour("material"), chart="materials", label="materials"
    )
    lines = []
    for e in o.tickets:
        a = e.attrs
        net = figures.number(a.get("net_kg"))
        lines.append(
            f"<tr><td>{_local(e.ts_ms, o.tz)}</td><td>{esc(a.get('ticket', ''))}</td>"
            f"<td>{esc(a.get('material', ''))}</td><td>{esc(a.get('lot', ''))}</td>"
            f'<td class="num">{esc(fmt(net, "kg"))}</td></tr>'
        )
    skipped = sum(o.materials.skipped.values())
    note = (
        f'<p class="small">{skipped} ticket(s) not counted (see the figures API).</p>'
        if skipped
        else ""
    )
    return (
        '<article class="card"><h2>Raw material received today</h2>'
        f'{chart}<table class="tickets"><thead><tr><th>Time</th><th>Ticket</th><th>Material</th>'
        f'<th>Lot</th><th class="num">Net</th></tr></thead><tbody>{"".join(lines)}</tbody></table>'
        f"{note}</article>"
    )


def _series_name(s: SeriesInfo) -> str:
    where = " · ".join(t for t in (s.area, s.process) if t)
    return f"{s.metric} ({where})" if where else s.metric


TICK_STEPS_MS = [m * 60_000 for m in (5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440)]


def time_ticks(span: tuple[int, int], tz: ZoneInfo, most: int = 7) -> list[tuple[int, str]]:
    """Tick marks for a time axis over `span`: at most `most`, on whole local minutes, hours or
    days, labelled with the local time (or the day, for a step of a day)."""
    lo, hi = span
    step = next((s for s in TICK_STEPS_MS if (hi - lo) / s <= most), TICK_STEPS_MS[-1])
    if (hi - lo) / step > most:
        step = -(-(hi - lo) // most // 86_400_000) * 86_400_000
    utcoffset = datetime.fromtimestamp(lo / 1000, UTC).astimezone(tz).utcoffset()
    offset_ms = int(utcoffset.total_seconds()) * 1000 if utcoffset is not None else 0
    first = -(-(lo + offset_ms) // step) * step - offset_ms
    pattern = "%a %d" if step >= 86_400_000 else "%H:%M"
    return [(t, _local(t, tz, pattern)) for t in range(first, hi, step)]


def _range_picker(t: Trend, ranges: Sequence[TrendRange]) -> str:
    chosen = t.range.name if t.range is not None else ""
    options = "".join(
        f'<option value="{esc(r.name)}"{" selected" if r.name == chosen else ""}>'
        f"{esc(r.label)}</option>"
        for r in ranges
    )
    return (
        f'<label for="trend-range">Range</label><select id="trend-range" name="range">'
        f"{options}</select>"
    )


def _bucket_text(ms: int) -> str:
    return f"{ms // 60_000}-minute" if ms < 3_600_000 else "hourly"


def _trend(o: Overview, t: Trend, ranges: Sequence[TrendRange] = ()) -> str:
    options = []
    for s in o.series:
        selected = " selected" if t.series is not None and s.series_id == t.series.series_id else ""
        options.append(
            f'<option value="{s.series_id}"{selected}>{esc(s.device_id)} / '
            f"{esc(_series_name(s))} [{esc(unit_label(s.unit))}]</option>"
        )
    picker = _range_picker(t, ranges) if ranges else ""
    form = (
        '<form class="trend-pick" method="get" action="/"><label for="trend-series">Series</label>'
        f'<select id="trend-series" name="series">{"".join(options)}</select>{picker}'
        '<noscript><button type="submit">Show</button></noscript></form>'
    )
    if t.series is None:
        empty = '<p class="empty">No series yet.</p>'
        return f'<article class="card"><h2>Trend</h2>{form}{empty}</article>'
    s = t.series
    unit = unit_label(s.unit)
    colour = charts.colour(s.medium)
    window = t.range.label if t.range is not None else "last 24 h"
    since = f"since {_local(t.span[0], o.tz)} (data began)" if t.fitted else window
    if t.counter is not None:
        f = t.counter.figures["bars"]
        part = (f, data_began(t.counter, f.boundaries[0]))
        chart = charts.bar_chart(
            _hour_bars(f, o.tz, unit, [part]),
            unit=unit,
            colour=colour,
            chart="trend",
            label=f"{s.metric} consumption, {window}",
        )
        per = (
            "day"
            if len(f.boundaries) > 1 and f.boundaries[1] - f.boundaries[0] > 7_200_000
            else "hour"
        )
        caption = f"{esc(_series_name(s))}: consumption per {per}, {esc(since)}"
    else:
        bucket = t.bucket_ms or (t.range.bucket_ms if t.range is not None else 300_000)
        chart = charts.line_chart(
            t.points,
            x_labels=time_ticks(t.span, o.tz),
            span=t.span,
            unit=unit,
            colour=colour,
            chart="trend",
            label=f"{s.metric}, {window}",
            empty=f"no readings in the {window}",
        )
        caption = f"{esc(_series_name(s))}: {_bucket_text(bucket)} mean with min–max, {esc(since)}"
    return (
        f'<article class="card"><h2>Trend</h2>{form}<figure class="chart-box">'
        f"<figcaption>{caption}</figcaption>{chart}</figure></article>"
    )


def _live(o: Overview) -> str:
    rows = []
    ordered = sorted(
        o.latest,
        key=lambda v: (v.series.device_id, v.series.area, v.series.process, v.series.metric),
    )
    for v in ordered:
        s = v.series
        age = o.now_ms - v.ts_ms
        quality = QUALITY.get(v.quality & 3, "?")
        cls = "bad" if quality == "bad" else "stale" if age > STALE_MS else ""
        rows.append(
            f'<tr class="{cls}" data-series="{s.series_id}"><td>{esc(s.device_id)}</td>'
            f"<td>{esc(' · '.join(t for t in (s.area, s.process) if t))}</td>"
            f"<td>{esc(s.metric)}</td>"
            f'<td class="num" data-value="{v.value!r}">{esc(fmt(v.value))}</td>'
            f"<td>{esc(unit_label(s.unit))}</td><td>{ago(age)}</td><td>{quality}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="7" class="empty">No readings yet.</td></tr>'
    return (
        '<section class="card"><h2>Live values</h2><div class="scroll"><table class="live">'
        "<thead><tr><th>Gateway</th><th>Area · process</th><th>Metric</th>"
        '<th class="num">Value</th><th>Unit</th><th>Age</th><th>Quality</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div></section>"
    )
