"""The dashboard's gateway table: problems first, pending gateways collapsed.

Pure rendering from `cloud.apps.overview.Overview`, like `cloud.apps.dashboard_page` (which puts
this table on the page); every gateway's name is escaped.
"""

from __future__ import annotations

from cloud.apps.charts import esc
from cloud.apps.overview import Overview
from cloud.storage.devices import DeviceState, DeviceStatus

STALE_MS = 5 * 60_000
CLOCK_STATES = {0: "synced", 1: "corrected", 2: "untrusted"}


def ago(ms: int) -> str:
    """A duration for people: 12 s, 5 min, 2 h 10 min, 3 d."""
    s = max(0, ms) // 1000
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d"


def _health_class(age_ms: int | None) -> str:
    if age_ms is None:
        return "bad"
    return "ok" if age_ms < 2 * 60_000 else "warn" if age_ms < 15 * 60_000 else "bad"


PENDING_NAMES_SHOWN = 50
SEVERITY = {"bad": 0, "warn": 1, "ok": 2, "off": 3}


def _gateway_row(o: Overview, d: DeviceState, newest: dict[str, int]) -> tuple[int, str]:
    """The table row of one enrolled gateway and how bad its state is (`SEVERITY`)."""
    seen_age = None if d.last_seen_ms is None else o.now_ms - d.last_seen_ms
    seen = "never" if seen_age is None else f"{ago(seen_age)} ago"
    data = newest.get(d.device_id)
    data_text = "–" if data is None else ago(o.now_ms - data)
    behind = data is not None and d.last_seen_ms is not None and d.last_seen_ms - data > STALE_MS
    if behind and data is not None and d.last_seen_ms is not None:
        data_text += f' <span class="warn">behind {ago(d.last_seen_ms - data)}</span>'
    disabled = d.status == DeviceStatus.DISABLED
    state = "" if d.status == DeviceStatus.ACTIVE else f' <span class="warn">{esc(d.status)}</span>'
    dropped = d.dropped_buffer_full + d.dropped_damaged + d.rejected_invalid
    drop_title = (
        f"buffer full {d.dropped_buffer_full}, damaged {d.dropped_damaged},"
        f" rejected {d.rejected_invalid}"
    )
    chain = "ok" if not (d.gaps or d.forks) else f"{d.gaps} gap(s) · {d.forks} fork(s)"
    clock = CLOCK_STATES.get(d.clock_state or 0, "?") if d.clock_state is not None else "–"
    offset = "" if d.clock_offset_ms is None else f" {d.clock_offset_ms:+d} ms"
    health = _health_class(seen_age)
    if disabled:
        severity = "off"  # an operator's decision, not a problem to chase
    elif health == "bad" or d.gaps or d.forks:
        severity = "bad"
    elif health == "warn" or behind or dropped or d.clock_state == 2:
        severity = "warn"
    else:
        severity = "ok"
    row = (
        f'<tr class="gw-{severity}" data-device="{esc(d.device_id)}" data-severity="{severity}">'
        f"<td>{esc(d.device_id)}{state}</td>"
        f'<td class="{health}">{seen}</td><td>{data_text}</td>'
        f'<td class="num">{d.readings:,}</td>'
        f'<td class="num {"bad" if dropped else ""}" title="{esc(drop_title)}">{dropped:,}</td>'
        f'<td class="{"bad" if d.gaps or d.forks else "ok"}">{chain}</td>'
        f'<td class="{"warn" if d.clock_state == 2 else ""}">{clock}{offset}</td></tr>'
    )
    return SEVERITY[severity], row


def gateways(o: Overview) -> str:
    """Problems first (never or long not seen, chain gaps or forks), then warnings (a few
    minutes late, behind, dropping, clock untrusted), then the healthy ones, then disabled;
    gateways that were issued a token but never enrolled are one collapsed row at the end."""
    newest: dict[str, int] = {}
    for v in o.latest:
        device = v.series.device_id
        newest[device] = max(newest.get(device, v.ts_ms), v.ts_ms)
    pending = sorted(d.device_id for d in o.devices if d.status == DeviceStatus.PENDING)
    rows = sorted(
        (_gateway_row(o, d, newest), d.device_id)
        for d in o.devices
        if d.status != DeviceStatus.PENDING
    )
    body = "".join(row for (_, row), _ in rows)
    if pending:
        shown = ", ".join(esc(p) for p in pending[:PENDING_NAMES_SHOWN])
        more = len(pending) - PENDING_NAMES_SHOWN
        rest = f" and {more:,} more" if more > 0 else ""
        body += (
            f'<tr class="pending" data-pending="{len(pending)}"><td colspan="7"><details>'
            f"<summary>{len(pending):,} pending (a token was issued, never enrolled)</summary>"
            f'<p class="small">{shown}{rest}</p></details></td></tr>'
        )
    body = body or '<tr><td colspan="7" class="empty">No gateways yet.</td></tr>'
    return (
        '<article class="card"><h2>Gateways</h2><table class="health"><thead><tr>'
        "<th>Gateway</th><th>Last upload</th><th>Newest data</th>"
        '<th class="num">Readings</th><th class="num">Dropped</th><th>Chain</th><th>Clock</th>'
        f"</tr></thead><tbody>{body}</tbody></table>"
        '<p class="small">Problems first. Gateways do not report their buffer size: "behind" is '
        "how much older the newest reading is than the last upload, a gateway catching up after "
        "an outage.</p></article>"
    )
