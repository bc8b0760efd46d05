"""`make bench`: every figure next to its baseline measured in the same run, and as a ratio.

BENCH_SIZE=small|full (small by default; full for the numbers quoted in docs and notes).
BENCH_JSON=path (default .bench/results.json) receives the same figures for scripts.
BENCH_ONLY=codec,agent,… runs a subset.

A suite that fails (an exception, a check inside it that does not hold) is reported by name with
its error after the table, in the JSON under "failed", and makes the exit status 1; the other
suites' figures are measured, printed and written all the same.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

# (figure, baseline, how to read the ratio, target) — the table's rows in order. A target is the
# ratio figure/baseline that must hold ("<=" or ">=" against the number), an absolute bound on
# the figure ("abs<="), or None.
ROWS: list[tuple[str, str | None, str, tuple[str, float] | None]] = [
    ("codec.bytes_per_reading", "codec.baseline_bytes_per_reading", "bytes", ("abs<=", 2.0)),
    ("codec.bytes_per_reading.gzip", "codec.baseline_bytes_per_reading", "bytes", ("abs<=", 2.0)),
    ("codec.encode_us_per_reading", "codec.baseline_encode_us_per_reading", "µs", ("abs<=", 1.0)),
    (
        "codec.encode_us_per_reading.gzip",
        "codec.baseline_encode_us_per_reading",
        "µs",
        ("abs<=", 1.0),
    ),
    ("codec.decode_us_per_reading", "codec.baseline_decode_us_per_reading", "µs", None),
    ("codec.columnar_json_bytes_per_reading.zstd", "codec.bytes_per_reading", "bytes", None),
    ("agent.ingest_readings_per_s", "agent.ingest_limit_readings_per_s", "/s", (">=", 0.40)),
    ("agent.drain_1m_s.sqlite", None, "s", ("abs<=", 30.0)),
    ("agent.drain_1m_s.postgres", None, "s", ("abs<=", 30.0)),
    ("agent.rss_mb_backlog_1m", None, "MB", ("abs<=", 60.0)),
    ("agent.rss_mb_idle", None, "MB", None),
    ("agent.cpu_us_per_reading", None, "µs", None),
    ("agent.disk_bytes_per_reading", "agent.disk_floor_bytes_per_reading", "bytes", ("<=", 2.0)),
    (
        "agent.disk_mb_per_day_50_series",
        "agent.disk_floor_mb_per_day_50_series",
        "MB",
        ("<=", 2.0),
    ),
    ("agent.wire_bytes_per_reading", None, "bytes", None),
    ("cloud.readings_per_s.sqlite", "cloud.limit_readings_per_s.sqlite", "/s", (">=", 0.5)),
    ("cloud.readings_per_s.postgres", "cloud.limit_readings_per_s.postgres", "/s", (">=", 0.5)),
    ("cloud.small_batches_per_s.sqlite", "cloud.empty_post_per_s", "/s", (">=", 1 / 3)),
    ("cloud.small_batches_per_s.postgres", "cloud.empty_post_per_s", "/s", (">=", 1 / 3)),
    # Per worker with `serve --workers 1` and `--workers 2`, each against the one-process empty
    # handler (the target); then the 2-worker total against two empty-handler processes on the
    # same machine, which says how much of the drop is the cores the processes share.
    (
        "cloud.small_batches_per_s.postgres.workers1",
        "cloud.empty_post_per_s",
        "/s",
        (">=", 1 / 3),
    ),
    ("cloud.batches_per_s_per_worker", "cloud.empty_post_per_s", "/s", (">=", 1 / 3)),
    (
        "cloud.small_batches_per_s.postgres.workers2",
        "cloud.empty_post_per_s.workers2",
        "/s",
        None,
    ),
    ("mqtt.msgs_per_s", "mqtt.baseline_msgs_per_s", "/s", None),
    ("mqtt.readings_per_s", None, "/s", None),
    ("opcua.readings_per_s", "opcua.baseline_readings_per_s", "/s", None),
    ("opcua.cpu_us_per_reading", "opcua.baseline_cpu_us_per_reading", "µs", None),
    ("opcua.server_writes_per_s", "opcua.baseline_server_writes_per_s", "/s", None),
    ("mqtt.rss_mb_backlog", None, "MB", ("abs<=", 60.0)),
    ("serial.mcu_frames_per_s", None, "/s", None),
    ("serial.modbus_polls_per_s", None, "/s", None),
    ("dashboard.overview_ms", None, "ms", None),
    ("dashboard.overview_ms_1y", None, "ms", ("abs<=", 150.0)),
    ("dashboard.trend_7d_ms_1y", None, "ms", None),
    ("fleet.gateways", None, "", None),  # >= 10,000 at BENCH_SIZE=full
    ("fleet.batches_per_s", None, "/s", None),
    ("fleet.readings_per_s", None, "/s", None),
    ("fleet.p99_ms", None, "ms", None),
    ("fleet.max_batches_per_s", None, "/s", None),
    ("fleet.max_readings_per_s", None, "/s", None),
    ("fleet.lost", None, "", ("abs<=", 0)),
    ("fleet.duplicates", None, "", ("abs<=", 0)),
]
SUITES = ("codec", "agent", "cloud", "mqtt", "opcua", "serial", "dashboard", "fleet")


def _fmt(x: float) -> str:
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}"


def _verdict(value: float, base: float | None, target: tuple[str, float] | None) -> str:
    if target is None:
        return ""
    kind, limit = target
    if kind == "abs<=":
        return "ok" if value <= limit else f"MISS (target <= {limit:g})"
    if kind == "abs>=":
        return "ok" if value >= limit else f"MISS (target >= {limit:g})"
    if base is None or base == 0:
        return ""
    if kind == "<=":
        return "ok" if value / base <= limit else f"MISS (target <= {limit:g}x baseline)"
    return "ok" if value / base >= limit else f"MISS (target >= {limit:.0%} of baseline)"


def table(results: dict[str, float]) -> str:
    lines = [f"{'figure':44} {'value':>12} {'baseline':>12} {'ratio':>7}  unit   verdict"]
    shown = set()
    for key, base_key, unit, target in ROWS:
        if key not in results:
            continue
        shown.add(key)
        value = results[key]
        base = results.get(base_key) if base_key else None
        if base_key:
            shown.add(base_key)
        ratio = f"{value / base:.2f}" if base else ""
        verdict = _verdict(value, base, target)
        base_s = _fmt(base) if base is not None else ""
        lines.append(f"{key:44} {_fmt(value):>12} {base_s:>12} {ratio:>7}  {unit:6} {verdict}")
    rest = sorted(k for k in results if k not in shown)
    if rest:
        lines.append("")
        lines.extend(f"{k:44} {_fmt(results[k]):>12}" for k in rest)
    return "\n".join(lines)


def main() -> int:
    size = os.environ.get("BENCH_SIZE", "small")
    if size not in ("small", "full"):
        print(f"bench: BENCH_SIZE must be small or full, not {size!r}", file=sys.stderr)
        return 2
    only = [s for s in os.environ.get("BENCH_ONLY", ",".join(SUITES)).split(",") if s]
    results, missing, failed = run_suites(only, size)
    print(table(results))
    if missing:
        print(f"\nnot built yet, so not measured: {', '.join(missing)}")
    for suite, error in failed.items():
        print(f"\nFAILED suite {suite}: {error}")
    path = Path(os.environ.get("BENCH_JSON", ".bench/results.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"size": size, "python": platform.python_version(), "machine": platform.machine()}
    out = {"meta": meta, "results": results, "failed": failed}
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return 1 if failed else 0


def run_suites(only: list[str], size: str) -> tuple[dict[str, float], list[str], dict[str, str]]:
    """Every suite in `only`, each on its own: (figures, suites not built, failed suite ->
    its error). One suite's failure never discards another's figures."""
    results: dict[str, float] = {}
    missing: list[str] = []
    failed: dict[str, str] = {}
    for suite in only:
        try:
            module = importlib.import_module(f"bench.{suite}")
        except ModuleNotFoundError:
            missing.append(suite)
            continue
        started = time.perf_counter()
        print(f"bench: {suite} ({size}) …", file=sys.stderr, flush=True)
        try:
            results.update(module.run(size))
        except Exception as exc:  # a suite's own failure: reported, the next suite still runs
            traceback.print_exc(file=sys.stderr)
            failed[suite] = f"{type(exc).__name__}: {exc}"
        print(f"bench: {suite} took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results, missing, failed


if __name__ == "__main__":
    raise SystemExit(main())
