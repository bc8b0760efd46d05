"""Clock trust: stamps, flags, epochs, corrections; never a 1970 date."""

from __future__ import annotations

from agent.clock import (
    EPOCH_SHIFT,
    RELEASE_FLOOR_MS,
    AgentClock,
    Reference,
    epoch_delta,
    make_sync_check,
)
from wire.models import MIN_TS_MS, TIME_UNTRUSTED, ClockState

T = 1_800_000_000_000


class Fake:
    def __init__(self, wall: int, mono: int = 5_000):
        self.wall, self.mono = wall, mono

    def wall_ms(self):
        return self.wall

    def mono_ms(self):
        return self.mono

    def tick(self, ms: int):
        self.wall += ms
        self.mono += ms


def clock(source, synced=False, floor=0):
    state = {"synced": synced}
    c = AgentClock(
        source, lambda: state["synced"], kernel_boot_id="b", floor_ms=floor, next_epoch_id=7
    )
    return c, state


def test_synced_clock_stamps_wall_time_unflagged():
    src = Fake(T)
    c, _ = clock(src, synced=True)
    assert c.state == ClockState.SYNCED
    assert c.now() == (T, 0)


def test_a_1970_clock_is_flagged_and_floored_never_1970():
    src = Fake(wall=86_400_000)  # 1970-01-02: a Pi without RTC or network
    c, _ = clock(src)
    ts, flags = c.now()
    assert c.state == ClockState.UNTRUSTED
    assert ts >= RELEASE_FLOOR_MS > MIN_TS_MS
    assert flags == TIME_UNTRUSTED | (7 << EPOCH_SHIFT)
    src.tick(1500)
    assert c.now()[0] == ts + 1500  # advances with the monotonic clock
    assert [e.id for e in c.take_new_epochs()] == [7]


def test_floor_from_the_buffer_wins_over_an_older_wall_clock():
    floor = RELEASE_FLOOR_MS + 10_000_000
    c, _ = clock(Fake(wall=RELEASE_FLOOR_MS), floor=floor)
    assert c.now()[0] == floor


def test_receiver_time_corrects_and_yields_one_delta_for_the_epoch():
    src = Fake(wall=86_400_000, mono=10_000)
    c, _ = clock(src)
    epoch = c.epoch
    assert epoch is not None
    untrusted_ts, _ = c.now()
    # A response: sent at mono 10_000, received at 10_200, receiver says T at the midpoint.
    src.mono = 10_200
    c.observe_server_time(T, 10_000, 10_200)
    assert c.state == ClockState.CORRECTED
    assert c.now() == (T + 100, 0)  # receiver time extrapolated 100 ms past the midpoint
    (ref,) = c.take_references()
    assert ref == Reference(T, 10_100)
    # the reading stamped at mono 10_000 really happened at T - 100
    assert untrusted_ts + epoch_delta(epoch, ref) == T - 100
    assert c.offset_ms == (86_400_000 - 100) - T  # wall clock at the midpoint minus receiver


def test_ntp_sync_later_is_a_reference_too():
    src = Fake(wall=T - 3_600_000)
    c, state = clock(src)
    assert c.state == ClockState.UNTRUSTED
    assert c.take_new_epochs()
    state["synced"] = True
    src.wall = T
    c.refresh()
    assert c.state == ClockState.SYNCED
    assert len(c.take_references()) == 1
    c.refresh()
    assert c.take_references() == []  # once per untrusted stretch, not per check


def test_losing_ntp_keeps_time_by_the_last_good_reference():
    src = Fake(wall=T)
    c, state = clock(src, synced=True)
    c.take_references()
    state["synced"] = False
    c.refresh()
    src.tick(1000)
    assert c.state == ClockState.CORRECTED
    assert c.now() == (T + 1000, 0)
    assert c.take_new_epochs() == []


def test_sync_checks():
    assert make_sync_check("assume_synced", flag_file="/nope")() is True
    assert make_sync_check("receiver_only", flag_file="/nope")() is False
    assert make_sync_check("timesyncd", flag_file="/nope")() is False
    assert make_sync_check("timesyncd", flag_file=__file__)() is True
    assert make_sync_check("adjtimex", flag_file="/nope")() in (True, False)  # reads the kernel
    assert make_sync_check("auto", flag_file=__file__)() is True
