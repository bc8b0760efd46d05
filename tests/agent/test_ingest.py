"""Hand-over from sources: cheap appends, groups, bounded memory, commit waits."""

from __future__ import annotations

import asyncio

from agent.clock import AgentClock
from agent.ingest import Ingest
from wire.models import SeriesKey

T = 1_800_000_000_000


class Wall:
    def wall_ms(self):
        return T

    def mono_ms(self):
        return 0


def make(flush_max=10, max_pending=25):
    clock = AgentClock(Wall(), lambda: True, kernel_boot_id="b", floor_ms=0, next_epoch_id=1)
    return Ingest(
        clock,
        series={3: SeriesKey("old")},
        last_values={3: (T, 41.0)},
        flush_max_readings=flush_max,
        max_pending=max_pending,
    )


def test_series_ids_continue_after_known_ones_and_resume_values():
    ingest = make()
    assert ingest.series_id(SeriesKey("old")) == 3
    assert ingest.series_id(SeriesKey("new")) == 4
    assert ingest.last_value(3) == 41.0
    assert ingest.last_value(4) is None
    group = ingest.take()
    assert group.new_series == [(4, SeriesKey("new"))]


def test_full_sets_the_flush_event_and_overflow_is_counted():
    ingest = make()
    for i in range(9):
        ingest.add(3, float(i))
    assert not ingest.full.is_set()
    ingest.add(3, 9.0)
    assert ingest.full.is_set()
    for i in range(20):
        ingest.add(3, float(i))
    group = ingest.take()
    assert len(group.rows) == 25
    assert group.dropped == 5
    assert ingest.readings_in == 30
    assert not ingest.full.is_set()
    assert group.rows[0] == (3, T, 0.0, 0)


def test_give_back_keeps_order_and_bound():
    ingest = make()
    for i in range(20):
        ingest.add(3, float(i))
    group = ingest.take()
    for i in range(20, 30):
        ingest.add(3, float(i))
    ingest.give_back(group)
    again = ingest.take()
    assert [r[2] for r in again.rows] == [float(i) for i in range(5, 30)]  # oldest 5 gave way
    assert again.dropped == 5


async def test_committed_waits_for_the_group_holding_earlier_readings():
    ingest = make()
    ingest.add(3, 1.0)
    waiter = asyncio.create_task(ingest.committed())
    await asyncio.sleep(0)
    assert not waiter.done()
    group = ingest.take()
    await asyncio.sleep(0)
    assert not waiter.done()
    ingest.mark_committed(group)
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(ingest.committed(), 1)  # nothing pending: returns at once
