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


def test_events_share_the_group_and_the_bound():
    from wire.models import Event

    ingest = make(flush_max=4, max_pending=6)
    ingest.add(3, 1.0)
    for n in range(3):
        ingest.add_event(Event("ticket", T + n))
    assert ingest.full.is_set()  # readings and events together reach flush_max
    for n in range(3, 6):
        ingest.add_event(Event("ticket", T + n))
    group = ingest.take()
    assert len(group.rows) == 1
    assert [e.ts_ms for e in group.events] == [T, T + 1, T + 2, T + 3, T + 4]
    assert group.dropped == 1  # the sixth event found no room
    assert ingest.events_in == 6


async def test_committed_waits_for_events_and_positions_too():
    from wire.models import Event

    for hand_over in (
        lambda i: i.add_event(Event("ticket", T)),
        lambda i: i.set_position(7, (1, 2)),
    ):
        ingest = make()
        hand_over(ingest)
        waiter = asyncio.create_task(ingest.committed())
        await asyncio.sleep(0)
        assert not waiter.done()
        ingest.mark_committed(ingest.take())
        await asyncio.wait_for(waiter, 1)


def test_positions_latest_wins_and_a_failed_group_gives_them_back():
    ingest = make()
    ingest.set_position(7, (1, 5))
    ingest.set_position(7, (1, 9))
    ingest.set_position(8, (2, 1))
    group = ingest.take()
    assert group.positions == {7: (1, 9), 8: (2, 1)}
    ingest.set_position(8, None)  # forgotten after the failed commit was taken: that wins
    ingest.give_back(group)
    assert ingest.take().positions == {7: (1, 9), 8: None}
