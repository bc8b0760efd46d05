"""Prometheus metrics of one receiver process, rendered in the text exposition format 0.0.4
(written by `hostio.prometheus`).

Label values come from small fixed sets (route templates, status codes, error codes, outcomes),
never from request input, so the number of series stays bounded whatever clients send. Beside
the receiver's own families: `tierless_build_info{version="…"}` and the process's `process_*`
families (`hostio.procstats`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import wire.version
from hostio.procstats import build_info_family, process_families
from hostio.prometheus import MetricType, Sample, format_value, render, render_family

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        samples = [
            Sample(value, tuple(zip(self.labels, labels, strict=True)))
            for labels, value in sorted(self._values.items())
        ]
        if not self.labels and not self._values:
            samples.append(Sample(0))
        return render_family(self.name, MetricType.COUNTER, self.help, samples)


class Histogram:
    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float] = _LATENCY_BUCKETS_S
    ) -> None:
        self.name, self.help = name, help_text
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def render(self) -> list[str]:
        samples: list[Sample] = []
        cumulative = 0
        for bound, n in zip(self._bounds, self._counts, strict=False):
            cumulative += n
            samples.append(Sample(cumulative, (("le", format_value(bound)),), "_bucket"))
        samples += [
            Sample(self.count, (("le", "+Inf"),), "_bucket"),
            Sample(self._sum, (), "_sum"),
            Sample(self.count, (), "_count"),
        ]
        return render_family(self.name, MetricType.HISTOGRAM, self.help, samples)


class Metrics:
    """The receiver's metrics; one instance per app, passed in (no module-level registry)."""

    def __init__(self, version: str | None = None, *, worker: str = "") -> None:
        self.version = wire.version.release() if version is None else version
        # "k/N" in one of N worker processes (`cloud.workers`): which worker's counters these are
        self.worker = worker
        self.requests = Counter(
            "tierless_http_requests_total", "HTTP requests by route and status", ("route", "status")
        )
        self.batches = Counter(
            "tierless_batches_total",
            "Batches by outcome: stored, duplicate, seq_gap, chain_conflict",
            ("outcome",),
        )
        self.readings = Counter("tierless_readings_stored_total", "Readings written")
        self.events = Counter("tierless_events_stored_total", "Events written")
        self.rejections = Counter(
            "tierless_rejections_total", "Refused requests by error code", ("reason",)
        )
        self.ingest_seconds = Histogram(
            "tierless_ingest_seconds", "Time to answer POST /v1/batches, stored or duplicate"
        )

    def render(self) -> str:
        return render(
            metric.render()
            for metric in (
                self.requests,
                self.batches,
                self.readings,
                self.events,
                self.rejections,
                self.ingest_seconds,
            )
        ) + render(
            [
                build_info_family("tierless_build_info", self.version, "The receiver's release."),
                *self._worker_family(),
                *process_families(),
            ]
        )

    def _worker_family(self) -> list[list[str]]:
        if not self.worker:
            return []
        return [
            render_family(
                "tierless_worker_info",
                MetricType.GAUGE,
                "Which of the receiver's worker processes answered (k/N); counters are per worker.",
                [Sample(1, (("worker", self.worker),))],
            )
        ]
