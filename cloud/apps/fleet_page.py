"""The dashboard's fleet page (`/fleet`): one row per gateway from `cloud.apps.fleet.Fleet`.

Pure rendering; every string from a gateway is escaped (`charts.esc`); no inline script or
style (the dashboard's CSP). Rows carry `data-device` and `data-flags` for tests and scripts.
"""

from __future__ import annotations

from cloud.apps.charts import esc
from cloud.apps.fleet import FLAGS, Fleet, Gateway
from cloud.apps.gateways_page import CLOCK_STATES, ago


def _sources(g: Gateway, now_ms: int) -> str:
    if g.report is None:
        return "–"
    down = []
    for s in g.report.sources:
        if s.state == "down":
            why = s.reason or "down"
            # down_since_ms is the gateway's clock; its report names its clock state
            since = "" if s.down_since_ms is None else f", {ago(now_ms - s.down_since_ms)}"
            down.append(f"{s.name} ({why}{since})")
        elif s.parts_down:
            down.append(f"{s.name}: {', '.join(s.parts_down)} down")
    return esc("; ".join(down)) if down else f"{len(g.report.sources)} up"


def _row(g: Gateway, now_ms: int) -> str:
    r = g.report
    flags = " ".join(f'<span class="flag">{esc(f)}</span>' for f in g.flags) or "ok"
    contact = "never" if g.last_contact_ms is None else ago(now_ms - g.last_contact_ms) + " ago"
    if r is None:
        cells = ["–"] * 6
    else:
        age = r.backlog.oldest_age_s
        backlog = f"{r.backlog.readings}" + ("" if age is None else f", {ago(int(age * 1000))}")
        drops = ", ".join(f"{k} {v}" for k, v in r.drops.items() if v) or "0"
        cells = [
            esc(r.agent_version),
            f"<code>{esc(r.config_version[:8])}</code>",
            esc(backlog),
            esc(drops) + (f" (+{g.drops_recent})" if g.drops_recent else ""),
            esc(CLOCK_STATES.get(r.clock_state, str(r.clock_state))),
            f"{ago(int(r.uptime_s * 1000))}, {r.restarts}",
        ]
    tds = "".join(f"<td>{c}</td>" for c in [flags, contact, *cells])
    return (
        f'<tr data-device="{esc(g.device_id)}" data-flags="{esc(",".join(g.flags))}">'
        f"<th>{esc(g.device_id)}</th>{tds}<td>{_sources(g, now_ms)}</td></tr>"
    )


def content(fleet: Fleet) -> str:
    summary = "".join(
        f'<li data-flag="{esc(f)}"><b>{fleet.counts.get(f, 0)}</b> {esc(f)}</li>' for f in FLAGS
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "Gateway",
            "Attention",
            "Last heard",
            "Agent",
            "Config",
            "Backlog",
            "Drops",
            "Clock",
            "Up, restarts",
            "Sources",
        )
    )
    rows = "".join(_row(g, fleet.now_ms) for g in fleet.gateways)
    current = (
        f"<p>Config most of the fleet runs: <code>{esc(fleet.current_config[:8])}</code></p>"
        if fleet.current_config
        else ""
    )
    empty = "" if fleet.gateways else "<p>No enrolled gateways yet.</p>"
    return (
        f'<section class="card fleet"><h2>Fleet: {len(fleet.gateways)} gateways</h2>'
        f'<ul class="fleet-summary">{summary}</ul>{current}'
        f'<table class="fleet-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        f"{empty}</section>"
    )


def page(body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tierless · fleet</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body>
<header class="top">
<div class="brand">Tierless</div>
<div class="where">Fleet health · <a href="/">plant overview</a></div>
<form method="post" action="/logout"><button class="link" type="submit">Sign out</button></form>
</header>
<main id="content">{body}</main>
</body>
</html>
"""
