"""Hand-over from sources: cheap appends, groups, bounded memory, commit waits."""

from __future__ import annotations

import asyncio
import logging
import math

from agent.clock import EPOCH_SHIFT, AgentClock
from agent.ingest import Ingest
from wire.models import Event, SeriesKey

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


def test_buffer_watermarks_stage_through_the_ingest():
    from agent.watermarks import BufferWatermarks
    from firmware_bridge.source import McuPosition

    ingest = make()
    marks = BufferWatermarks({7: (1, 3)}, ingest)
    assert marks.load(7) == (1, 3)
    marks.stage(McuPosition(7, 1, 9))
    assert marks.load(7) == (1, 3)  # staged is not committed
    marks.save(7, (1, 9))  # the bridge, after the commit
    assert marks.load(7) == (1, 9)
    marks.forget(7)
    assert marks.load(7) is None
    assert ingest.take().positions == {7: None}  # the forget is committed with the next group


def test_a_key_the_contract_refuses_gets_no_series_and_its_readings_are_counted(caplog):
    ingest = make()
    sink = ingest.for_source("scale")
    bad = SeriesKey("weight", "11835\x00kg")
    sid = sink.series_id(bad)
    assert sid < 0
    assert sink.series_id(SeriesKey("weight", "g\x01")) == sid  # one id per problem, bounded
    assert sink.series_id(SeriesKey("x" * 129)) != sid
    with caplog.at_level(logging.WARNING, logger="agent.ingest"):
        for _ in range(3):
            sink.add(sid, 1.0)
    assert sink.last_value(sid) is None
    group = ingest.take()
    assert group.rows == []
    assert group.new_series == []
    assert group.rejected == {"control_characters": 3}
    assert not group.is_empty()  # the count must still be committed
    assert ingest.readings_in == 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "source 'scale': reading refused, not stored: unit: contains control characters"
    ]


def test_values_qualities_and_final_times_are_checked_at_the_door():
    ingest = make()
    ingest.add(3, math.nan)
    ingest.add(3, math.inf)
    ingest.add(3, 10**400)  # an int no float can hold
    ingest.add(3, 1.0, quality=99)
    ingest.add(3, 1.0, ts_ms=5)  # the source's own time, before 2000
    ingest.add(3, 1.0, quality=0 | 7 << EPOCH_SHIFT, ts_ms=5)  # untrusted epoch: the cut decides
    ingest.add(3, 2.0)
    group = ingest.take()
    assert [r[2] for r in group.rows] == [1.0, 2.0]
    assert group.rejected == {"not_finite": 3, "quality_code": 1, "timestamp_range": 1}


def test_events_are_checked_at_the_door_and_refusals_survive_a_failed_commit():
    ingest = make()
    sink = ingest.for_source("bridge")
    sink.add_event(Event("ticket", T, (("lot", "L\x07"),)))
    sink.add_event(Event("ticket", T, (("net", 2**70),)))  # MessagePack cannot carry it
    sink.add_event(Event("", T))
    sink.add_event(Event("ticket", 5, quality=1 << EPOCH_SHIFT))  # time not final: kept
    sink.add_event(Event("ticket", T, (("lot", "L1"),)))
    group = ingest.take()
    assert len(group.events) == 2
    assert group.rejected == {"bad_attr_value": 1, "out_of_range": 1, "empty": 1}
    ingest.give_back(group)
    assert ingest.take().rejected == group.rejected


def test_series_stored_with_a_refused_key_take_no_more_readings():
    clock = AgentClock(Wall(), lambda: True, kernel_boot_id="b", floor_ms=0, next_epoch_id=1)
    ingest = Ingest(
        clock,
        series={1: SeriesKey("w", "k\x00g")},
        last_values={},
        flush_max_readings=10,
        max_pending=25,
    )
    sid = ingest.series_id(SeriesKey("w", "k\x00g"))
    assert sid < 0
    ingest.add(sid, 1.0)
    assert ingest.take().rejected == {"control_characters": 1}
