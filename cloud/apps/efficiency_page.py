"""The efficiency page of the dashboard (`/efficiency`): intensity per process and medium over the
last days with its trend, the findings with their evidence, the live alerts, and production by
source (production counters, tickets, operators' entries) with the entries themselves. A page of its
own beside the overview; it signs in like the overview (`cloud.apps.dashboard`) and reads the
alert tables only to list them. Every string from a gateway is escaped; no inline script or style.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud.apps import dashboard_page, efficiency, production
from cloud.apps.alerts_api import alert_view
from cloud.apps.anomalies import Finding
from cloud.apps.charts import esc, fmt
from cloud.apps.context import AppContext
from cloud.apps.dashboard import Dashboard, DashboardConfig
from cloud.apps.figures import local_day
from cloud.apps.intensity import DAY_PERIOD, IntensityRow
from cloud.storage.alerts import AlertRecord, AlertStore
from cloud.storage.reads import ProductionRecord

DAY_MS = 24 * 3600 * 1000
WINDOW_DAYS = 30  # the detectors judge each day against the days before it in this window
SHOWN_DAYS = 7


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%a %d %b")


def _when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%d %b %H:%M")


def shell(content: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tierless · efficiency</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body>
<header class="top">
<div class="brand">Tierless</div>
<div class="where">Efficiency · <a href="/">plant overview</a></div>
<form method="post" action="/logout"><button class="link" type="submit">Sign out</button></form>
</header>
<main id="efficiency">{content}</main>
</body>
</html>
"""


def intensity_table(rows: Sequence[IntensityRow]) -> str:
    """Per process and medium, the last days: consumption, tonnes, intensity, trend, and the
    intensity of each shift that starts on the day."""
    days = [r for r in rows if r.period == DAY_PERIOD]
    if not days:
        return '<section class="card"><h2>Energy per tonne</h2><p>No production yet.</p></section>'
    groups: dict[tuple[str, str, str], list[IntensityRow]] = {}
    shifts: dict[tuple[str, str, str, int], dict[str, float | None]] = {}
    names: list[str] = []
    for r in rows:
        key = (r.process, r.medium, r.unit)
        if r.period == DAY_PERIOD:
            groups.setdefault(key, []).append(r)
            continue
        if r.period not in names:
            names.append(r.period)
        day = next((d.from_ms for d in days if d.from_ms <= r.from_ms < d.to_ms), None)
        if day is not None:
            shifts.setdefault((*key, day), {})[r.period] = r.intensity
    out = ['<section class="card" id="intensity"><h2>Energy per tonne, by day and shift</h2>']
    for (process, medium, unit), rs in sorted(groups.items()):
        out.append(f"<h3>{esc(process)} · {esc(medium)} ({esc(unit)}/t)</h3><table><tr>")
        out.append("<th>day</th><th>consumption</th><th>tonnes</th><th>per tonne</th>")
        out.append("<th>vs 14-day median</th>")
        out.append("".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>")
        for r in rs[-SHOWN_DAYS:]:
            ratio = "–" if r.ratio is None else f"{(r.ratio - 1) * 100:+.0f} %"
            value = "" if r.intensity is None else f' data-value="{r.intensity!r}"'
            by_shift = shifts.get((process, medium, unit, r.from_ms), {})
            cells = "".join(f'<td data-shift="{esc(n)}">{fmt(by_shift.get(n))}</td>' for n in names)
            out.append(
                f'<tr class="intensity" data-process="{esc(process)}" data-medium="{esc(medium)}">'
                f"<td>{esc(_day(r.from_ms))}</td><td>{fmt(r.consumption, unit)}</td>"
                f"<td>{fmt(r.tonnes, 't')}</td><td{value}>{fmt(r.intensity)}</td>"
                f"<td>{esc(ratio)}</td>{cells}</tr>"
            )
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


SHOWN_ENTRIES = 20
_SOURCES = (
    (production.COUNTERS, "counters"),
    (production.TICKETS, "tickets"),
    (production.ENTRIES, "entered"),
)


def production_section(
    sources: Mapping[str, Mapping[str, float]],
    names: Mapping[str, str],
    entries: Sequence[ProductionRecord],
) -> str:
    """Tonnes per process by source (production counters, tickets, operators' entries) and the
    newest entries, corrections shown beside what they replaced."""
    out = ['<section class="card" id="production"><h2>Production, by source</h2>']
    if not sources:
        out.append("<p>No production recorded.</p>")
    else:
        out.append("<table><tr><th>process</th>")
        out.append("".join(f"<th>{label}</th>" for _, label in _SOURCES) + "<th>total</th></tr>")
        for process, by_source in sorted(sources.items()):
            cells = "".join(
                f'<td data-source="{key}" data-value="{by_source.get(key, 0.0)!r}">'
                f"{fmt(by_source.get(key), 't') if key in by_source else '–'}</td>"
                for key, _ in _SOURCES
            )
            total = sum(by_source.values())
            out.append(
                f'<tr class="production" data-process="{esc(process)}">'
                f"<td>{esc(names.get(process) or process)}</td>{cells}"
                f"<td>{fmt(total, 't')}</td></tr>"
            )
        out.append("</table>")
    if entries:
        out.append("<h3>Entered by operators</h3><table><tr><th>entry</th><th>process</th>")
        out.append("<th>window</th><th>tonnes</th><th>by</th><th>note</th><th>status</th></tr>")
        for e in sorted(entries, key=lambda e: -e.entry_id)[:SHOWN_ENTRIES]:
            state = "in effect" if e.superseded_by is None else f"replaced by {e.superseded_by}"
            fixes = "" if e.supersedes is None else f" (corrects {e.supersedes})"
            out.append(
                f'<tr class="entry" data-entry="{e.entry_id}" '
                f'data-state="{"superseded" if e.superseded_by else "in-effect"}">'
                f"<td>{e.entry_id}{fixes}</td><td>{esc(names.get(e.process) or e.process)}</td>"
                f"<td>{esc(_when(e.from_ms))} – {esc(_when(e.to_ms))}</td>"
                f"<td>{fmt(e.tonnes, 't')}</td><td>{esc(e.actor)}</td><td>{esc(e.note)}</td>"
                f"<td>{esc(state)}</td></tr>"
            )
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def findings_list(findings: Sequence[Finding]) -> str:
    out = ['<section class="card" id="findings"><h2>Findings with evidence</h2>']
    if not findings:
        out.append("<p>Nothing out of the ordinary.</p></section>")
        return "".join(out)
    out.append("<table><tr><th>what</th><th>on</th><th>when</th><th>expected</th>")
    out.append("<th>seen</th><th>basis</th></tr>")
    for f in findings:
        out.append(
            f'<tr class="finding" data-kind="{esc(f.kind)}" data-subject="{esc(f.subject)}">'
            f"<td>{esc(f.kind)}</td><td>{esc(f.subject)}</td>"
            f"<td>{esc(_when(f.from_ms))} – {esc(_when(f.to_ms))}</td>"
            f"<td>{fmt(f.expected, f.unit)}</td><td>{fmt(f.seen, f.unit)}</td>"
            f"<td>{esc(f.basis)}</td></tr>"
        )
    out.append("</table></section>")
    return "".join(out)


def alerts_list(alerts: Sequence[AlertRecord]) -> str:
    live = [a for a in alerts if a.state != "resolved"]
    out = ['<section class="card" id="alerts"><h2>Alerts</h2>']
    if not live:
        out.append("<p>No live alert.</p></section>")
        return "".join(out)
    out.append("<table><tr><th>alert</th><th>state</th><th>what</th><th>on</th>")
    out.append("<th>since</th><th>times</th></tr>")
    for a in live:
        v = alert_view(a)
        out.append(
            f'<tr class="alert" data-state="{esc(v.state)}"><td>{v.alert_id}</td>'
            f"<td>{esc(v.state)}</td><td>{esc(v.kind)}</td><td>{esc(v.subject)}</td>"
            f"<td>{esc(_when(v.first_ms))}</td><td>{v.occurrences}</td></tr>"
        )
    out.append("</table></section>")
    return "".join(out)


class EfficiencyPage:
    def __init__(self, ctx: AppContext, store: AlertStore, config: DashboardConfig) -> None:
        self.ctx, self.store = ctx, store
        self.dashboard = Dashboard(ctx, config)

    async def page(self, request: Request) -> Response:
        if not self.dashboard.authorised(request):
            return self.dashboard.html(dashboard_page.sign_in_page(), 401)
        now = self.ctx.now_ms()
        tz = ZoneInfo(self.ctx.plant.tz)
        # whole local days, so each day's row is the whole day
        from_ms = local_day(now - WINDOW_DAYS * DAY_MS, tz)[0]
        config = await efficiency.plant_for(self.ctx.reads, self.ctx.plant, from_ms, now + 1)
        report = await efficiency.load(
            self.ctx.reads, config, from_ms=from_ms, to_ms=now + 1, until_ms=now + 1
        )
        alerts = await self.store.list_alerts()
        entries = await self.ctx.reads.list_production(from_ms, now + 1, in_effect_only=False)
        names = {p.name: p.display for p in config.processes if p.display}
        content = (
            alerts_list(alerts)
            + findings_list(report.findings)
            + production_section(report.sources, names, entries)
            + intensity_table(report.intensity)
        )
        return self.dashboard.html(shell(content))


def routes(ctx: AppContext, store: AlertStore, config: DashboardConfig) -> list[Route]:
    p = EfficiencyPage(ctx, store, config)
    return [Route("/efficiency", ctx.endpoint("efficiency_page", p.page), methods=["GET"])]
