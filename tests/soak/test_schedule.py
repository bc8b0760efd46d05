import random

import pytest

from soak.noise import Dirt, damage
from soak.schedule import OUTAGE_MIN_S, Kind, plan


def test_a_short_plan_injects_every_kind_once_first():
    faults = plan(45, seed=1, outage_max_s=8, broker=True)
    assert {f.kind for f in faults[:4]} == set(Kind)
    assert all(b.at_s > a.at_s + a.down_s for a, b in zip(faults, faults[1:], strict=False))


@pytest.mark.parametrize("seed", range(20))
def test_plans_stay_inside_the_run_and_respect_the_outage_bounds(seed):
    faults = plan(120, seed=seed, outage_max_s=30, broker=seed % 2 == 0)
    assert faults
    for f in faults:
        assert 0 < f.at_s < 120 - 5
        if f.kind is Kind.OUTAGE:
            assert OUTAGE_MIN_S <= f.down_s <= 30
            assert f.at_s + f.down_s <= 120 - 5
        else:
            assert f.down_s == 0
    if seed % 2:
        assert Kind.BROKER_RESTART not in {f.kind for f in faults}


def test_plans_are_replayable():
    assert plan(300, seed=9, outage_max_s=600, broker=True) == plan(
        300, seed=9, outage_max_s=600, broker=True
    )


def test_damage_flips_inserts_and_truncates_as_counted():
    rng = random.Random(3)
    counts = {"bytes": 0, "flips": 0, "controls": 0, "truncated_bytes": 0}
    chunk = bytes(range(64))
    out = [damage(chunk, Dirt(flip=1.0, control=0.0, truncate=0.0), rng, counts) for _ in range(50)]
    assert all(
        len(o) == 64 and sum(a != b for a, b in zip(o, chunk, strict=True)) == 1 for o in out
    )
    assert counts["flips"] == 50
    grown = damage(chunk, Dirt(flip=0.0, control=1.0, truncate=0.0), rng, counts)
    assert len(grown) == 65
    assert counts["controls"] == 1
    cut = damage(chunk, Dirt(flip=0.0, control=0.0, truncate=1.0), rng, counts)
    assert len(cut) == 64 - counts["truncated_bytes"]
    assert damage(chunk, Dirt(0.0, 0.0, 0.0), rng, counts) == chunk
