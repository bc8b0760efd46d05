"""`edge-agent status`: what the buffer file says, read-only, whether or not the agent runs.

Everything shown is persisted by the running agent (chain head, loss totals, uplink state, last
error, clock state) or counted from the tables, so status works on a stopped or crashed agent,
and never writes (SQLite's read-only URI mode; WAL lets it read while the agent writes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.errors import StoreError
from agent.journal import JOURNAL_SUFFIX, unmerged
from wire.keys import b64url_encode
from wire.models import ClockState

_BY_REASON = "total_rejected_by_"  # agent.buffer's per-reason totals
_CLOCK_NAMES = {
    ClockState.SYNCED: "synced (NTP)",
    ClockState.CORRECTED: "corrected against the receiver",
    ClockState.UNTRUSTED: "untrusted (readings flagged)",
}


def read_status(config: Config, *, now_ms: int | None = None) -> dict[str, Any]:
    """A plain dict (what `--json` prints); StoreError if there is no readable buffer."""
    path = Path(config.buffer.path)
    if not path.exists():
        raise StoreError(f"{path}: no buffer file (has the agent run yet?)")
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            uncut = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
            batches, frozen, out_oldest = conn.execute(
                "SELECT count(*), coalesce(sum(readings), 0), min(oldest_ts_ms) FROM outbox"
            ).fetchone()
            first = conn.execute("SELECT ts_ms FROM reading ORDER BY id LIMIT 1").fetchone()
            events = _events_held(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from exc
    # committed to the append journal, not yet merged into the tables
    records = unmerged(Path(f"{path}{JOURNAL_SUFFIX}"), int(meta.get("journal_merged_seq", 0)))
    journaled = [row for r in records for row in r.rows]
    uncut += len(journaled)
    events += sum(len(r.events) for r in records)
    journal_first = journaled[0][1] if journaled else None
    oldest_candidates = [
        v for v in (out_oldest, first[0] if first else None, journal_first) if v is not None
    ]
    oldest = min(oldest_candidates) if oldest_candidates else None
    clock_state = meta.get("clock_state")
    last_sync = meta.get("last_sync_ms")
    last_error, last_error_ms = meta.get("last_error"), meta.get("last_error_ms")
    # The buffer keeps the last error for good; it is current only until the next sync.
    current = last_error is not None and (
        last_sync is None or last_error_ms is None or last_error_ms > last_sync
    )
    key_changed_ms = _mtime_ms(Path(config.device.key_file))
    key_replaced = bool(
        current
        and last_error_ms is not None
        and key_changed_ms is not None
        and key_changed_ms > last_error_ms
    )
    digest = meta.get("head_digest")
    return {
        "device_id": config.device.id,
        "agent_running": _is_locked(path),
        "buffer": {
            "path": str(path),
            "file_bytes": path.stat().st_size,
            "readings": uncut + frozen,
            "readings_uncut": uncut,
            "events": events,
            "batches_frozen": batches,
            "oldest_reading_age_s": None if oldest is None else round((now - oldest) / 1000, 1),
            "damage": meta.get("damage"),
        },
        "uplink": {
            "state": meta.get("uplink_state", "never started"),
            "last_sync_ms": last_sync,
            "last_sync_age_s": None if last_sync is None else round((now - last_sync) / 1000, 1),
            "last_error": last_error,
            "last_error_ms": last_error_ms,
            "error_current": current,  # False: a sync succeeded after it
            "key_replaced_since_error": key_replaced,  # re-enrolled or rotated after it
            "batches_acked": int(meta.get("total_acked_batches", 0)),
            "readings_acked": int(meta.get("total_acked_readings", 0)),
        },
        "chain": {
            "head_seq": int(meta.get("head_seq", 0)),
            "head_digest": b64url_encode(bytes(digest)) if digest is not None else None,
            "confirmed_with_receiver": bool(meta.get("chain_confirmed", 0)),
        },
        "clock": {
            "state": None if clock_state is None else ClockState(int(clock_state)).name.lower(),
            "offset_ms": meta.get("clock_offset_ms"),
            "sync_check": config.clock.sync_check,  # what "synced" is based on
        },
        "key": {
            "keyid": meta.get("key_id"),  # the key the agent signs with
            "reload_error": meta.get("key_error"),  # why a replaced key file was not taken
        },
        "drops": {
            name: {
                "total": int(meta.get(f"total_{name}", 0)),
                "not_yet_reported": int(meta.get(f"pending_{name}", 0)),
            }
            for name in ("dropped_buffer_full", "dropped_damaged", "rejected_invalid")
        },
        "rejected_by_reason": {
            key.removeprefix(_BY_REASON): int(value)
            for key, value in sorted(meta.items())
            if key.startswith(_BY_REASON)
        },
        "readings_committed": int(meta.get("total_committed", 0)) + len(journaled),
        "restarts": max(0, int(meta.get("agent_starts", 0)) - 1),  # as health reports say
    }


def format_status(status: dict[str, Any]) -> str:
    """The human form: one fact per line."""
    b, u, c, k = status["buffer"], status["uplink"], status["chain"], status["clock"]
    key = status["key"]
    events = f", {b['events']} events" if b["events"] else ""
    lines = [
        f"device:        {status['device_id']}"
        f" (agent {'running' if status['agent_running'] else 'not running'})",
        f"buffer:        {b['readings']} readings{events} ({b['readings_uncut']} waiting, "
        f"{b['batches_frozen']} batch(es) frozen), {b['file_bytes']} bytes",
        f"oldest:        {_age(b['oldest_reading_age_s'])}",
        f"uplink:        {u['state']}",
        f"last sync:     {_when(u['last_sync_ms'], u['last_sync_age_s'])}",
        f"last error:    {_error(u)}",
        f"chain head:    seq {c['head_seq']}"
        + ("" if c["confirmed_with_receiver"] else " (not yet confirmed with the receiver)"),
        f"clock:         {_clock(k['state'], k['sync_check'])}"
        + ("" if k["offset_ms"] is None else f", offset {k['offset_ms']} ms"),
        f"key:           {key['keyid'] or 'unknown'}"
        + (f" (key file not taken: {key['reload_error']})" if key["reload_error"] else ""),
    ]
    labels = {
        "dropped_buffer_full": "dropped:",
        "dropped_damaged": "damaged:",
        "rejected_invalid": "rejected:",
    }
    reasons = ", ".join(f"{r} {n}" for r, n in status["rejected_by_reason"].items())
    for name, d in status["drops"].items():
        why = f" ({reasons})" if name == "rejected_invalid" and reasons else ""
        lines.append(
            f"{labels[name]:<15}{d['total']} total{why}, {d['not_yet_reported']} not yet reported"
        )
    if b["damage"]:
        lines.append(f"damage:        {b['damage']}")
    return "\n".join(lines)


def _events_held(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM event) + (SELECT coalesce(sum(events), 0) FROM outbox)"
        ).fetchone()
    except sqlite3.OperationalError:  # a schema 1 file: no events yet
        return 0
    return int(row[0])


def _clock(name: str | None, sync_check: str) -> str:
    if name is None:
        return "unknown"
    state = ClockState[name.upper()]
    if state == ClockState.SYNCED and sync_check == "assume_synced":
        return 'assumed synced (sync_check = "assume_synced": not checked)'
    return _CLOCK_NAMES[state]


def _error(u: dict[str, Any]) -> str:
    error = u["last_error"]
    if error is None:
        return "none"
    if not u.get("error_current", True):
        return f"none since the last sync (before it: {error})"
    if u.get("key_replaced_since_error"):
        return (
            f"{error} (the key file was replaced since: re-enrolled or rotated; a running agent "
            "tries again with it within seconds, a stopped one when started)"
        )
    return str(error)


def _mtime_ms(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns // 1_000_000
    except OSError:
        return None


def _age(age_s: float | None) -> str:
    return "nothing buffered" if age_s is None else f"{age_s:.1f} s old"


def _when(ms: int | None, age_s: float | None) -> str:
    if ms is None:
        return "never"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
    return f"{stamp} ({age_s:.0f} s ago)"


def _is_locked(path: Path) -> bool:
    """Whether an agent holds the buffer's lock (probing with a non-blocking lock of our own)."""
    try:
        fd = os.open(f"{path}.lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
