"""Devices as people read them: a table for `devices list`, one fact per line for `show`.

Input is the receiver's device record as `provisioning.client` decoded it (`wire.admin`); fields
a newer receiver adds are ignored by the decoder, and a device not yet seen prints "never" / "-".
The health columns come from the gateway's latest health report (`wire.http.HealthReport`,
docs/fleet.md).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from wire.admin import DeviceRecord

_CLOCK = {0: "NTP-synced", 1: "corrected", 2: "untrusted"}


def _when(ms: Any, now_ms: int) -> str:
    if not isinstance(ms, int):
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))
    return f"{stamp} ({_age((now_ms - ms) / 1000)} ago)"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _short_age(ms: Any, now_ms: int) -> str:
    return "never" if not isinstance(ms, int) else _age((now_ms - ms) / 1000) + " ago"


def _drops(device: DeviceRecord) -> int:
    d = device.dropped
    return d.buffer_full + d.damaged + d.rejected_invalid


def _clock(device: DeviceRecord) -> str:
    state, offset = device.clock.state, device.clock.offset_ms
    if state is None:
        return "-"
    name = _CLOCK.get(state, str(state))
    return name if offset is None else f"{name} {offset:+} ms"


def _health_cells(device: DeviceRecord, now_ms: int) -> tuple[str, str, str, str]:
    """HEALTH (age of the last report), BACKLOG, SOURCES, CONFIG; "-" before the first report."""
    h = device.health
    if isinstance(h, msgspec.UnsetType):
        return ("-", "-", "-", "-")
    r = h.report
    age = r.backlog.oldest_age_s
    backlog = f"{r.backlog.readings}" + ("" if age is None else f" ({_age(age)})")
    down = [s.name for s in r.sources if s.state == "down"]
    sources = f"{len(r.sources)} up" if not down else f"{len(down)}/{len(r.sources)} down"
    return (_short_age(h.received_ms, now_ms), backlog, sources, r.config_version[:8])


def health_lines(d: DeviceRecord, now_ms: int) -> list[str]:
    """The device's latest health report, one fact per line (none before the first report)."""
    h = d.health
    if isinstance(h, msgspec.UnsetType):
        return ["health:       no report yet"]
    r = h.report
    drops = ", ".join(f"{k} {v}" for k, v in r.drops.items() if v) or "none"
    lines = [
        f"health:       {_when(h.received_ms, now_ms)}",
        f"agent:        {r.agent_version}, config {r.config_version}, up {_age(r.uptime_s)},"
        f" {r.restarts} restart(s)",
        f"backlog:      {r.backlog.readings} readings, {r.backlog.bytes} bytes"
        + ("" if r.backlog.oldest_age_s is None else f", oldest {_age(r.backlog.oldest_age_s)}"),
        f"agent drops:  {drops}",
        f"uplink:       {r.uplink or '-'}",
    ]
    for s in r.sources:
        if s.state == "down":
            since = _when(s.down_since_ms, now_ms)
            state = f"down since {since} ({s.reason}{': ' + s.detail if s.detail else ''})"
        else:
            state = "up" + (f", parts down: {', '.join(s.parts_down)}" if s.parts_down else "")
        errors = ", ".join(f"{k} {v}" for k, v in s.errors.items())
        lines.append(
            f"source:       {s.name}: {state}, {s.outages} outage(s)"
            + (f", errors: {errors}" if errors else "")
        )
    return lines


def device_table(devices: list[DeviceRecord], now_ms: int) -> str:
    header = (
        "DEVICE",
        "STATUS",
        "HEAD",
        "LAST SEEN",
        "READINGS",
        "GAPS",
        "FORKS",
        "DROPS",
        "CLOCK",
        "HEALTH",
        "BACKLOG",
        "SOURCES",
        "CONFIG",
    )
    rows = [header]
    for d in sorted(devices, key=lambda d: d.device_id):
        rows.append(
            (
                d.device_id,
                d.status,
                str(d.head_seq),
                _short_age(d.last_seen_ms, now_ms),
                str(d.readings),
                str(d.gaps),
                str(d.forks),
                str(_drops(d)),
                _clock(d),
                *_health_cells(d, now_ms),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    if len(rows) == 1:
        lines.append("(no devices)")
    return "\n".join(lines)


def _status(d: DeviceRecord) -> str:
    """The receiver reports an active device whose keys are all revoked as "revoked"; the
    detail view says what that means for the gateway."""
    if d.status == "revoked":
        return "revoked (every key revoked: uploads refused with 403 until it re-enrols)"
    return d.status


def device_detail(d: DeviceRecord, now_ms: int) -> str:
    skew = d.clock.created_skew_ms
    lines = [
        f"device:       {d.device_id}",
        f"status:       {_status(d)}",
        f"last seen:    {_when(d.last_seen_ms, now_ms)}"
        + (f", boot {d.last_boot_id}" if d.last_boot_id else ""),
        f"chain head:   seq {d.head_seq}",
        f"stored:       {d.batches} batches, {d.readings} readings",
        f"gaps, forks:  {d.gaps}, {d.forks}",
        f"drops:        buffer full {d.dropped.buffer_full}, damaged "
        f"{d.dropped.damaged}, rejected {d.dropped.rejected_invalid}",
        f"clock:        {_clock(d)}"
        + (f", signature created {skew:+} ms from receipt" if skew is not None else ""),
        *health_lines(d, now_ms),
    ]
    if not isinstance(d.keys, msgspec.UnsetType):
        lines.append("keys:" if d.keys else "keys:         none (enrolment pending)")
        for k in d.keys:
            status = k.status
            if status == "retiring" and k.not_after_ms is not None:
                status += " until " + _when(k.not_after_ms, now_ms).split(" (")[0]
            if status == "revoked" and k.revoked_ms is not None:
                status += " " + _when(k.revoked_ms, now_ms).split(" (")[0]
            lines.append(f"  {k.keyid}  {status}")
    if not isinstance(d.chain_events, msgspec.UnsetType) and d.chain_events:
        lines.append("chain events (newest first):")
        for e in d.chain_events:
            lines.append(
                f"  {e.kind} at seq {e.seq} (expected {e.expected_seq})"
                f" {e.reason or ''} {_when(e.at_ms, now_ms)}".rstrip()
            )
    return "\n".join(lines)
