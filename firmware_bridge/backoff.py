"""Capped, jittered exponential backoff for reopening ports and reconnecting links.

Delay n (from 0) is drawn uniformly from [d/2, d] with d = min(max_s, initial_s * 2**n): never
zero (no hot loop against a missing device), never above the cap, and spread out so that many
gateways replugged by one power blip do not retry in lockstep. The random source is passed in.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self.attempts = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one failed attempt."""
        ceiling = min(self.max_s, self.initial_s * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        """Call after a success: the next failure waits the shortest time again."""
        self.attempts = 0
