"""Robust statistics for the efficiency figures: median, MAD and the band a value is judged by.

Pure and small on purpose: docs/figures.md ("Anomalies with evidence") states the same formulas,
so a finding can be recomputed by hand from the numbers it names.

- `median` of an even count is the mean of the two middle values.
- `mad` is the median absolute deviation from the median, unscaled.
- `Baseline.upper`/`lower`: `median ± max(k · 1.4826 · MAD, rel_floor · |median|, abs_floor)`.
  1.4826 · MAD estimates the standard deviation of normal data; the floors keep a very regular
  history (MAD near 0) from making ordinary noise an anomaly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    if not values:
        raise ValueError("median of nothing")
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    if n % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def mad(values: Sequence[float]) -> float:
    """The median absolute deviation from the median (unscaled)."""
    m = median(values)
    return median([abs(v - m) for v in values])


@dataclass(frozen=True, slots=True)
class Band:
    """How far from the median a value may lie: `k` robust sigmas, at least the floors."""

    k: float = 6.0
    rel_floor: float = 0.5
    abs_floor: float = 0.0


@dataclass(frozen=True, slots=True)
class Baseline:
    """The median and MAD of comparable values, and how many there were."""

    median: float
    mad: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Baseline | None:
        """The baseline of the finite values, None when there are none."""
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return None
        return cls(median(finite), mad(finite), len(finite))

    def width(self, band: Band) -> float:
        return max(
            band.k * MAD_TO_SIGMA * self.mad, band.rel_floor * abs(self.median), band.abs_floor
        )

    def upper(self, band: Band) -> float:
        return self.median + self.width(band)

    def lower(self, band: Band) -> float:
        return self.median - self.width(band)

    def above(self, value: float, band: Band) -> bool:
        return value > self.upper(band)

    def below(self, value: float, band: Band) -> bool:
        return value < self.lower(band)
