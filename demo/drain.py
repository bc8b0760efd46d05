"""When has the gateway passed on everything the devices produced? The three conditions of the
drain, in the order the data travels, each read from what the processes publish:

1. `devices_quiet`: the devices stopped producing, the MCU holds no unacknowledged reading (the
   agent acknowledges only what it committed), no MQTT publish is in flight (`status.json`);
2. `handed_over`: the agent has received every answer the devices sent, and committed all it
   received (its Prometheus endpoint: per-source counters `units.ok` (key 1) of the meter's bus,
   `events` of the weighbridge, `messages` of the MQTT source, against the devices' own counts;
   then `edge_agent_readings_in_total` = committed + dropped, and the same for events);
3. `uploaded`: `edge-agent status --json` shows no event left in the buffer and no reading taken
   before the devices stopped (the switched-off meter keeps adding BAD markers, which are not
   part of the count; the oldest reading's age tells them apart).

If the agent's metrics cannot be read, condition 2 is replaced by a fixed wait (the caller's),
long enough for a gateway that is not starved of CPU.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.procs import run_once

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text format: (name, labels) -> value; comments and odd lines skipped."""
    out: Samples = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m is None:
            continue
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return out


def scrape(url: str) -> Samples | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return parse_metrics(response.read().decode("utf-8", errors="replace"))
    except OSError:
        return None


def _get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _sum(samples: Samples, name: str) -> float:
    return sum(v for (n, _labels), v in samples.items() if n == name)


def devices_quiet(status: Mapping[str, Any]) -> bool:
    return bool(
        status.get("stopped")
        and status["mcu"]["unacked"] == 0
        and status.get("mqtt", {}).get("in_flight", 0) == 0
    )


def handed_over(
    status: Mapping[str, Any], samples: Samples, sources: Mapping[str, str]
) -> bool | None:
    """Condition 2; None when the metrics do not say (a counter missing). `sources` names the
    agent's source of each device: {"meter": "incomer-bus", ...}."""
    counter = "edge_agent_source_stats_total"
    wanted = [("meter", {"stat": "units.ok", "key": "1"}, status["meter"]["requests"])]
    wanted.append(("weighbridge", {"stat": "events"}, status["weighbridge"]["tickets"]))
    if "mqtt" in status and "mqtt" in sources:
        wanted.append(("mqtt", {"stat": "messages"}, status["mqtt"]["messages"]))
    for device, labels, produced in wanted:
        got = _get(samples, counter, source=sources[device], **labels)
        if got is None:
            return None
        if got < produced:
            return False
    return committed_all(samples)


def committed_all(samples: Samples) -> bool | None:
    """Whether the agent committed (or counted as dropped) everything it took in; None when the
    metrics do not say."""
    totals = [
        _get(samples, f"edge_agent_{name}_total")
        for name in ("readings_in", "readings_committed", "events_in", "events_committed")
    ]
    if any(v is None for v in totals):
        return None
    r_in, r_committed, e_in, e_committed = (v or 0.0 for v in totals)
    dropped = _sum(samples, "edge_agent_readings_dropped_total")
    return r_in == r_committed + dropped and e_in == e_committed


@dataclass(frozen=True, slots=True)
class Backlog:
    readings: int
    events: int
    oldest_age_s: float | None


def backlog(edge_agent: Path, config: Path) -> Backlog | None:
    """What the gateway's buffer holds (`edge-agent status --json`); None if it cannot say."""
    done = run_once([edge_agent, "status", "--json", "--config", config], timeout_s=30)
    if done.returncode != 0:
        return None
    try:
        buffer = json.loads(done.stdout)["buffer"]
        return Backlog(
            int(buffer["readings"]), int(buffer["events"]), buffer["oldest_reading_age_s"]
        )
    except (ValueError, KeyError, TypeError):
        return None


def uploaded(held: Backlog, *, stop_ms: int, asked_ms: int) -> bool:
    """Condition 3. `asked_ms`: wall time just before `edge-agent status` ran (its age is
    measured from a moment after that, rounded to 0.1 s)."""
    if held.events:
        return False
    if held.readings == 0:
        return True
    return held.oldest_age_s is not None and asked_ms - held.oldest_age_s * 1000 > stop_ms + 100
