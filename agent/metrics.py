"""Prometheus text endpoint on loopback: what the agent did, and what state it is in.

Counters are plain integers the components add to; gauges are refreshed from the live objects
just before each scrape (`refresh` callback), and so are the sources' own `stats` (serial
sources count polls, timeouts, frames, reopens …): `source_counters()` flattens a stats dataclass
into `(stat, key) -> value`: the dotted path of field names (`port.opens`, `units.timeouts`,
`mcu_errors`) and the dictionary keys on the way ("" for none; a unit id `3`, an error code `5`,
joined by "/" when there are several), exported as
`edge_agent_source_stats_total{source="…",stat="…"[,key="…"]}` (one label per thing, which is
what `promtool check metrics` asks for; the family's name must not say "counter").

Beside the agent's own families: `edge_agent_build_info{version="…"}` and the process's
`process_*` families (`hostio.procstats`).

The HTTP side is a deliberately tiny asyncio server (GET /metrics only, one response per
connection, 5 s to send the request): the endpoint is for a local scraper, and a full web stack
on a gateway would cost more memory than everything it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import wire.version
from hostio.procstats import build_info_family, process_families
from hostio.prometheus import (
    CONTENT_TYPE,
    Labels,
    MetricType,
    Sample,
    render,
    render_family,
)

log = logging.getLogger(__name__)

UPLINK_STATES = ("starting", "idle", "sending", "retrying", "stopped")
# Fields of source stats that are not counters (a deadline, a run length that resets).
_NOT_COUNTERS = frozenset({"down_until", "consecutive_failures"})


def source_counters(stats: Any) -> dict[tuple[str, str], int]:
    """A source's stats dataclass as `(dotted.field.path, key) -> count` (see the module
    docstring); non-counters are left out."""
    out: dict[tuple[str, str], int] = {}

    def walk(value: Any, name: str, key: str) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                if f.name not in _NOT_COUNTERS:
                    walk(getattr(value, f.name), f"{name}.{f.name}" if name else f.name, key)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, name, f"{key}/{k}" if key else str(k))
        elif isinstance(value, int) and not isinstance(value, bool):
            out[(name, key)] = value

    walk(stats, "", "")
    return out


@dataclass(slots=True)
class Metrics:
    readings_in: int = 0
    readings_committed: int = 0
    events_in: int = 0
    events_committed: int = 0
    events_acked: int = 0
    dropped: dict[str, int] = field(
        default_factory=lambda: {"buffer_full": 0, "damaged": 0, "rejected_invalid": 0}
    )
    rejected: dict[str, int] = field(default_factory=dict)  # contract refusals, by reason
    batches_sent: int = 0  # attempts
    batches_acked: dict[str, int] = field(default_factory=lambda: {"stored": 0, "duplicate": 0})
    readings_acked: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    commits: int = 0
    commit_seconds_total: float = 0.0
    backlog_readings: int = 0
    backlog_age_seconds: float = 0.0
    uplink_state: str = "starting"
    uplink_up: int = 1  # 0 from a failed or refused attempt until the next answer
    last_ack_age_seconds: float | None = None  # None: never acknowledged (no sample)
    buffer_fill_ratio: float = 0.0
    clock_state: int = 2
    clock_offset_ms: int = 0  # exported in seconds (Prometheus's base unit)
    key_reloads: int = 0
    key_reload_failures: int = 0
    key_reload_failing: int = 0  # 1 while the key file on disk cannot be used
    sources: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)  # name -> stats
    version: str | None = None  # the release (edge_agent_build_info), read at the first scrape

    def render(self) -> str:
        out: list[str] = []

        def metric(
            name: str, kind: MetricType, text: str, samples: list[tuple[Labels, float]]
        ) -> None:
            family = [Sample(value, labels) for labels, value in samples]
            out.extend(render_family(f"edge_agent_{name}", kind, text, family))

        metric(
            "readings_in_total",
            MetricType.COUNTER,
            "Readings handed over by sources.",
            [((), self.readings_in)],
        )
        metric(
            "readings_committed_total",
            MetricType.COUNTER,
            "Readings committed to the buffer.",
            [((), self.readings_committed)],
        )
        metric(
            "readings_dropped_total",
            MetricType.COUNTER,
            "Readings lost or refused, by reason.",
            [((("reason", k),), v) for k, v in sorted(self.dropped.items())],
        )
        metric(
            "rejected_total",
            MetricType.COUNTER,
            "Readings and events refused at the ingest or set aside at a cut because they break "
            "the contract, by reason (kept in the buffer file across restarts).",
            [((("reason", k),), v) for k, v in sorted(self.rejected.items())],
        )
        metric(
            "events_in_total",
            MetricType.COUNTER,
            "Events handed over by sources.",
            [((), self.events_in)],
        )
        metric(
            "events_committed_total",
            MetricType.COUNTER,
            "Events committed to the buffer.",
            [((), self.events_committed)],
        )
        metric(
            "events_acked_total",
            MetricType.COUNTER,
            "Events in acknowledged batches.",
            [((), self.events_acked)],
        )
        metric(
            "batches_sent_total",
            MetricType.COUNTER,
            "Batch upload attempts.",
            [((), self.batches_sent)],
        )
        metric(
            "batches_acked_total",
            MetricType.COUNTER,
            "Batches acknowledged by the receiver.",
            [((("status", k),), v) for k, v in sorted(self.batches_acked.items())],
        )
        metric(
            "readings_acked_total",
            MetricType.COUNTER,
            "Readings in acknowledged batches.",
            [((), self.readings_acked)],
        )
        metric(
            "retries_total",
            MetricType.COUNTER,
            "Upload retries, by cause.",
            [((("cause", k),), v) for k, v in sorted(self.retries.items())],
        )
        metric(
            "refusals_total",
            MetricType.COUNTER,
            "Uploads refused by the receiver, by status.",
            [((("status", k),), v) for k, v in sorted(self.refusals.items())],
        )
        metric(
            "bytes_sent_total",
            MetricType.COUNTER,
            "Request bytes sent (body and headers).",
            [((), self.bytes_sent)],
        )
        metric("commits_total", MetricType.COUNTER, "Group commits.", [((), self.commits)])
        metric(
            "commit_seconds_total",
            MetricType.COUNTER,
            "Time spent in group commits.",
            [((), self.commit_seconds_total)],
        )
        metric(
            "backlog_readings",
            MetricType.GAUGE,
            "Readings held in the buffer, not yet acknowledged.",
            [((), self.backlog_readings)],
        )
        metric(
            "backlog_age_seconds",
            MetricType.GAUGE,
            "Age of the oldest reading held.",
            [((), self.backlog_age_seconds)],
        )
        metric(
            "uplink_state",
            MetricType.GAUGE,
            "1 for the uplink's current state.",
            [((("state", s),), 1 if self.uplink_state == s else 0) for s in UPLINK_STATES],
        )
        metric(
            "uplink_up",
            MetricType.GAUGE,
            "1 while the receiver answers; 0 from a failed or refused upload until it answers.",
            [((), self.uplink_up)],
        )
        metric(
            "last_ack_age_seconds",
            MetricType.GAUGE,
            "Seconds since the receiver last acknowledged a batch (no sample: never).",
            [] if self.last_ack_age_seconds is None else [((), self.last_ack_age_seconds)],
        )
        metric(
            "buffer_fill_ratio",
            MetricType.GAUGE,
            "Buffer file's used bytes over buffer.max_mb, measured every flush interval.",
            [((), self.buffer_fill_ratio)],
        )
        metric(
            "clock_state",
            MetricType.GAUGE,
            "0 NTP-synced, 1 corrected by the receiver, 2 untrusted.",
            [((), self.clock_state)],
        )
        metric(
            "clock_offset_seconds",
            MetricType.GAUGE,
            "Local wall clock minus receiver time.",
            [((), self.clock_offset_ms / 1000)],
        )
        metric(
            "key_reloads_total",
            MetricType.COUNTER,
            "Device keys loaded from a changed key file (a rotation).",
            [((), self.key_reloads)],
        )
        metric(
            "key_reload_failures_total",
            MetricType.COUNTER,
            "Changed key files that could not be used (the key in use was kept).",
            [((), self.key_reload_failures)],
        )
        metric(
            "key_reload_failing",
            MetricType.GAUGE,
            "1 while the key file on disk cannot be used and the previous key signs.",
            [((), self.key_reload_failing)],
        )
        metric(
            "source_stats_total",
            MetricType.COUNTER,
            "Counts of each source (polls, timeouts, frames, reopens ...), by stat and key "
            "(a unit id, an error code).",
            [
                ((("source", source), ("stat", stat), *((("key", key),) if key else ())), value)
                for source, counters in sorted(self.sources.items())
                for (stat, key), value in sorted(counters.items())
            ],
        )
        if self.version is None:  # not at start-up: reading it costs tens of milliseconds
            self.version = wire.version.release()
        out.extend(build_info_family("edge_agent_build_info", self.version, "The agent's release."))
        return render([out, *process_families()])


async def serve(
    host: str, port: int, metrics: Metrics, refresh: Callable[[], None]
) -> asyncio.Server:
    """Start the endpoint; the caller closes the returned server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readuntil(b"\r\n\r\n")
            line = request.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
                refresh()
                body = metrics.render().encode()
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\n".encode()
            else:
                body = b"not found\n"
                head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a scraper that hangs up or dawdles gets nothing; the agent does not care
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=16 * 1024)
