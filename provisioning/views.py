"""Devices as people read them: a table for `devices list`, one fact per line for `show`.

Input is the receiver's device object (docs/api.md); missing fields print as "-", so an older
or newer receiver never breaks the table.
"""

from __future__ import annotations

import time
from typing import Any

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


def _drops(device: dict[str, Any]) -> int:
    dropped = device.get("dropped")
    if not isinstance(dropped, dict):
        return 0
    return sum(v for v in dropped.values() if isinstance(v, int))


def _clock(device: dict[str, Any]) -> str:
    clock = device.get("clock")
    if not isinstance(clock, dict) or clock.get("state") is None:
        return "-"
    state = clock.get("state")
    name = _CLOCK.get(state, str(state)) if isinstance(state, int) else str(state)
    offset = clock.get("offset_ms")
    return name if offset is None else f"{name} {offset:+} ms"


def device_table(devices: list[dict[str, Any]], now_ms: int) -> str:
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
    )
    rows = [header]
    for d in sorted(devices, key=lambda d: str(d.get("device_id"))):
        rows.append(
            (
                str(d.get("device_id", "-")),
                str(d.get("status", "-")),
                str(d.get("head_seq", "-")),
                _short_age(d.get("last_seen_ms"), now_ms),
                str(d.get("readings", "-")),
                str(d.get("gaps", "-")),
                str(d.get("forks", "-")),
                str(_drops(d)),
                _clock(d),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    if len(rows) == 1:
        lines.append("(no devices)")
    return "\n".join(lines)


def device_detail(d: dict[str, Any], now_ms: int) -> str:
    dropped: dict[str, Any] = d["dropped"] if isinstance(d.get("dropped"), dict) else {}
    clock: dict[str, Any] = d["clock"] if isinstance(d.get("clock"), dict) else {}
    lines = [
        f"device:       {d.get('device_id')}",
        f"status:       {d.get('status')}",
        f"last seen:    {_when(d.get('last_seen_ms'), now_ms)}"
        + (f", boot {d['last_boot_id']}" if d.get("last_boot_id") else ""),
        f"chain head:   seq {d.get('head_seq')}",
        f"stored:       {d.get('batches')} batches, {d.get('readings')} readings",
        f"gaps, forks:  {d.get('gaps')}, {d.get('forks')}",
        f"drops:        buffer full {dropped.get('buffer_full', 0)}, damaged "
        f"{dropped.get('damaged', 0)}, rejected {dropped.get('rejected_invalid', 0)}",
        f"clock:        {_clock(d)}"
        + (
            f", signature created {clock['created_skew_ms']:+} ms from receipt"
            if isinstance(clock.get("created_skew_ms"), int)
            else ""
        ),
    ]
    keys = d.get("keys")
    if isinstance(keys, list):
        lines.append("keys:" if keys else "keys:         none (enrolment pending)")
        for k in keys:
            if not isinstance(k, dict):
                continue
            status = str(k.get("status"))
            if status == "retiring" and isinstance(k.get("not_after_ms"), int):
                status += " until " + _when(k["not_after_ms"], now_ms).split(" (")[0]
            if status == "revoked" and isinstance(k.get("revoked_ms"), int):
                status += " " + _when(k["revoked_ms"], now_ms).split(" (")[0]
            lines.append(f"  {k.get('keyid')}  {status}")
    events = d.get("chain_events")
    if isinstance(events, list) and events:
        lines.append("chain events (newest first):")
        for e in events:
            if isinstance(e, dict):
                lines.append(
                    f"  {e.get('kind')} at seq {e.get('seq')} (expected {e.get('expected_seq')})"
                    f" {e.get('reason') or ''} {_when(e.get('at_ms'), now_ms)}".rstrip()
                )
    return "\n".join(lines)
