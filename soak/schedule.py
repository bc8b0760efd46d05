"""What faults a soak run injects, and when. Pure: a seed and a duration in, a plan out.

Faults run one after another, never two at once, with a quiet gap of `gap_s` between them (so
the gateway can show that it recovers). The first faults of a plan go through every kind once in
a shuffled order, so that even a short run injects each kind; after that the kinds are drawn at
random with `WEIGHTS`.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Kind(enum.StrEnum):
    KILL_AGENT = "kill -9 agent"
    KILL_RECEIVER = "kill -9 receiver"
    OUTAGE = "receiver outage"
    BROKER_RESTART = "broker restart"


WEIGHTS = {Kind.KILL_AGENT: 4, Kind.KILL_RECEIVER: 2, Kind.OUTAGE: 2, Kind.BROKER_RESTART: 2}
OUTAGE_MIN_S = 2.0
TAKES_S = 3.0  # about how long a kill and restart takes, for the plan's arithmetic


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # seconds after the run's start
    kind: Kind
    down_s: float = 0.0  # outages: how long the receiver stays down


def plan(
    seconds: float,
    *,
    seed: int,
    outage_max_s: float,
    broker: bool,
    gap_s: tuple[float, float] = (2.0, 5.0),
) -> list[Fault]:
    """The faults of a run of `seconds`; none starts in the last `gap_s[1]` seconds, so the
    gateway is running normally when the devices stop."""
    rng = random.Random(seed)
    kinds = [k for k in Kind if broker or k is not Kind.BROKER_RESTART]
    first = kinds[:]
    rng.shuffle(first)
    faults: list[Fault] = []
    t = rng.uniform(*gap_s)
    while t < seconds - gap_s[1]:
        weights = [WEIGHTS[k] for k in kinds]
        kind = first.pop() if first else rng.choices(kinds, weights=weights)[0]
        down = 0.0
        room = seconds - gap_s[1] - t
        if kind is Kind.OUTAGE and room < OUTAGE_MIN_S:
            kind = Kind.KILL_RECEIVER  # no room left for an outage
        if kind is Kind.OUTAGE:
            down = min(rng.uniform(OUTAGE_MIN_S, max(OUTAGE_MIN_S, outage_max_s)), room)
        faults.append(Fault(round(t, 3), kind, round(down, 3)))
        t += down + TAKES_S + rng.uniform(*gap_s)
    return faults
