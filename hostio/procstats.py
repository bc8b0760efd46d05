"""This process's resource use, read from Linux's /proc, as the `process_*` metric families every
Prometheus exporter shows (so the usual dashboards and alerts work unchanged): CPU seconds,
resident and virtual memory, open and allowed file descriptors, start time.

Read at scrape time, a few small files: no new dependency, no thread. On a system without /proc
(a developer's laptop) the families are left out rather than invented.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from pathlib import Path

from hostio.prometheus import MetricType, Sample, render_family

_PROC = Path("/proc")


def _boot_time_s(proc: Path) -> float | None:
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def process_families(proc: Path = _PROC) -> list[Sequence[str]]:
    """The `process_*` families of this process (none when /proc cannot be read)."""
    me = proc / "self"
    try:
        stat = (me / "stat").read_text()
        fds = sum(1 for _ in (me / "fd").iterdir())
    except OSError:
        return []
    # Fields after the command name (which may hold spaces and parentheses): man 5 proc.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    start_ticks = int(fields[19])
    vsize, rss_pages = int(fields[20]), int(fields[21])
    max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    families: list[Sequence[str]] = [
        render_family(
            "process_cpu_seconds_total",
            MetricType.COUNTER,
            "Total user and system CPU time spent in seconds.",
            [Sample(cpu_s)],
        ),
        render_family(
            "process_resident_memory_bytes",
            MetricType.GAUGE,
            "Resident memory size in bytes.",
            [Sample(rss_pages * page)],
        ),
        render_family(
            "process_virtual_memory_bytes",
            MetricType.GAUGE,
            "Virtual memory size in bytes.",
            [Sample(vsize)],
        ),
        render_family(
            "process_open_fds", MetricType.GAUGE, "Number of open file descriptors.", [Sample(fds)]
        ),
    ]
    if max_fds != resource.RLIM_INFINITY:
        families.append(
            render_family(
                "process_max_fds",
                MetricType.GAUGE,
                "Maximum number of open file descriptors.",
                [Sample(max_fds)],
            )
        )
    boot = _boot_time_s(proc)
    if boot is not None:
        families.append(
            render_family(
                "process_start_time_seconds",
                MetricType.GAUGE,
                "Start time of the process since unix epoch in seconds.",
                [Sample(boot + start_ticks / ticks)],
            )
        )
    return families


def build_info_family(name: str, version: str, help_text: str) -> list[str]:
    """`name{version="…"} 1`: the usual way to put a version on a dashboard."""
    return render_family(name, MetricType.GAUGE, help_text, [Sample(1, (("version", version),))])
