"""Hand-over from sources: cheap appends, groups, bounded memory, commit waits."""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import EPOCH_SHIFT, AgentClock
from agent.ingest import Ingest
from agent.sources.mqtt.mapping import Mapper, MqttRule, compile_rule
from agent.sources.mqtt.presets import PRESETS as MQTT_PRESETS
from firmware_bridge.ascii_protocol import (
    AnswerParser,
    AsciiConfig,
    AsciiValue,
    EventConfig,
    LineSplitter,
    compile_spec,
)
from firmware_bridge.errors import DeviceError, FrameError, UnparsableAnswerError
from firmware_bridge.framing import FrameDecoder, encode_frame
from firmware_bridge.mcu_frames import TS_UTC, ChannelInfo, ReadingFrame, decode_body
from firmware_bridge.modbus_map import REGISTERS, DataType, decode_words
from firmware_bridge.port_config import PortConfig
from tests.agent.helpers import cut, decode, open_test_buffer
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


def test_last_value_is_the_newest_added_whether_pending_taken_or_refused_after():
    ingest = make(flush_max=100, max_pending=100)
    new = ingest.series_id(SeriesKey("new"))
    ingest.add(3, 42.0)
    ingest.add(new, 1.0)
    ingest.add(3, 43.0)
    assert (ingest.last_value(3), ingest.last_value(new)) == (43.0, 1.0)  # pending
    ingest.take()
    assert (ingest.last_value(3), ingest.last_value(new)) == (43.0, 1.0)  # taken
    ingest.add(3, math.inf)  # refused: not a value the source may resume from
    ingest.add_rows([(new, T, 2.0, 0)])
    assert (ingest.last_value(3), ingest.last_value(new)) == (43.0, 2.0)
    ingest.take()
    assert ingest.last_value(new) == 2.0


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


def test_the_fast_path_refuses_what_the_full_check_refuses(tmp_path):
    """The common reading is checked inline; whatever it lets through must be what the full
    check lets through: a quality code that is not an int is refused (it equals 0, but `|=`
    the clock's flags would raise), and an int value is stored as the float it stands for,
    so one at 2**63 or above cannot break the buffer's commit."""
    ingest = make(flush_max=100, max_pending=100)
    ingest.add(3, 1.0, 0.0)
    ingest.add(3, 2**63)
    ingest.add(3, True)
    ingest.add(3, 4.0)
    group = ingest.take()
    assert sum(group.rejected.values()) == 1  # refused and counted, not raised
    assert [(r[2], type(r[2])) for r in group.rows] == [
        (float(2**63), float),
        (1.0, float),
        (4.0, float),
    ]
    buf = open_test_buffer(tmp_path / "b.db")
    buf.commit(group.rows, new_series=[(3, SeriesKey("old"))])
    assert [r.value for r in decode(cut(buf).body).readings()] == [float(2**63), 1.0, 4.0]
    buf.close()


def test_last_value_follows_readings_added_after_it_was_asked():
    ingest = make(flush_max=100, max_pending=100)
    ingest.add(3, 42.0)
    assert ingest.last_value(3) == 42.0
    ingest.add(3, 44.0)
    assert ingest.last_value(3) == 44.0
    ingest.take()
    ingest.add(3, 45.0)
    assert ingest.last_value(3) == 45.0


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


# -- arbitrary bytes from every source's parser, through the door, cut and encoded ------------

_PORT = PortConfig(path="/dev/null")
_ASCII = [
    AnswerParser(compile_spec(AsciiConfig(name="scale", port=_PORT, preset="mt-sics"))),
    AnswerParser(
        compile_spec(
            AsciiConfig(
                name="bridge",
                port=_PORT,
                mode="streaming",
                pattern=r"^(?P<lot>\S*)\s+(?P<net>[-+]?\d+(?:\.\d*)?(?:[eE]\d+)?)\s*(?P<unit>.*)$",
                values=[AsciiValue(group="net", metric="net_mass", unit_group="unit")],
                event=EventConfig(kind="ticket", attrs={"lot": "lot", "net": "net", "u": "unit"}),
            )
        )
    ),
]
_MQTT = Mapper(
    [
        compile_rule(msgspec.convert(r, MqttRule), MQTT_PRESETS)
        for r in (
            {
                "topic": "j/{device}",
                "metric_template": "{device}.{metric}",
                # units are a closed set (wire/units.py): the hostile text comes in the metric
                "values": [{"metric": "v{key}", "path": "*", "unit": "W"}],
            },
            {"preset": "tasmota"},
        )
    ]
)
_DTYPES = list(REGISTERS)

_noise = st.binary(max_size=120)
_mt_sics = st.builds(
    lambda status, number, unit: b"S " + status + b"  " + number + b" " + unit + b"\r\n",
    st.sampled_from([b"S", b"D", b"I", b"+", b"-", b"\x00"]),
    st.from_regex(rb"\A[-+]?\d{1,12}(\.\d{0,6})?\Z"),
    st.binary(max_size=12),
)
_chunks = st.lists(st.one_of(_noise, _mt_sics), max_size=8)


def _ascii(sink, data: list[bytes]) -> None:
    for parser in _ASCII:
        splitter = LineSplitter(end=b"\n", max_line=parser.spec.config.max_line)
        for chunk in data:
            for raw in splitter.feed(chunk):
                try:
                    answer = parser.parse(raw.decode("latin-1"))
                except (UnparsableAnswerError, DeviceError):
                    continue
                for spec, value, unit in answer.values:
                    sid = sink.series_id(SeriesKey(spec.metric, unit, spec.site, spec.area))
                    sink.add(sid, 0.0 if value is None else value, answer.quality)
                if answer.attrs is not None:
                    sink.add_event(Event("ticket", T, answer.attrs, answer.quality))


def _mcu(sink, bodies: list[bytes], noise: bytes) -> None:
    stream = b"".join(encode_frame(b) for b in bodies if b) + noise
    info: dict[int, ChannelInfo] = {}
    for item in FrameDecoder().feed(stream):
        if isinstance(item, FrameError):
            continue
        try:
            msg = decode_body(item)
        except FrameError:
            continue
        if isinstance(msg, ChannelInfo):
            info[msg.channel] = msg
        elif isinstance(msg, ReadingFrame):
            ch = info.get(msg.channel)
            key = SeriesKey(ch.metric if ch else f"mcu_ch{msg.channel}", ch.unit if ch else "")
            ts = msg.ts_ms if msg.flags & TS_UTC else None
            sink.add(sink.series_id(key), msg.value, msg.quality, ts)


def _modbus(sink, words: list[int], dtype: DataType, scale: float) -> None:
    n = REGISTERS[dtype]
    sid = sink.series_id(SeriesKey("modbus_value", "kWh", "site"))
    for i in range(0, len(words) - n + 1, n):
        for order in ("big", "little"):
            sink.add(sid, decode_words(words[i : i + n], dtype, order, order) * scale)


def _mqtt(sink, topic: str, payload: bytes) -> None:
    for t in ("j/" + topic, "tele/" + topic + "/SENSOR"):
        for key, value, quality, ts_ms in _MQTT.map(t, payload, now_ms=T).readings:
            sink.add(sink.series_id(key), value, quality, ts_ms)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ascii_data=_chunks,
    mcu_bodies=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
    mcu_noise=_noise,
    words=st.lists(st.integers(0, 0xFFFF), max_size=16),
    dtype=st.sampled_from(_DTYPES),
    scale=st.sampled_from([1.0, 0.001, 1e300]),
    topic=st.text(max_size=30),
    payload=st.one_of(_noise, st.sampled_from([b'{"a": 1e400}', b'{"\\u0000": 1}', b"NaN"])),
)
def test_arbitrary_bytes_through_every_parser_never_poison_a_batch(
    ascii_data, mcu_bodies, mcu_noise, words, dtype, scale, topic, payload
):
    ingest = make(flush_max=10_000, max_pending=100_000)
    _ascii(ingest.for_source("ascii"), ascii_data)
    _mcu(ingest.for_source("mcu"), mcu_bodies, mcu_noise)
    _modbus(ingest.for_source("modbus"), words, dtype, scale)
    _mqtt(ingest.for_source("mqtt"), topic, payload)
    group = ingest.take()
    with tempfile.TemporaryDirectory() as tmp:
        buf = open_test_buffer(Path(tmp) / "b.db")
        try:
            buf.commit(
                group.rows,
                new_series=group.new_series,
                events=group.events,
                rejected_before=group.rejected,
            )
            sent = events = rejected = 0
            while (entry := cut(buf, max_readings=50)) is not None:
                batch = decode(entry.body)  # the receiver's own decoder and checks
                sent += batch.reading_count()
                events += len(batch.events)
                rejected += batch.counters.rejected_invalid
            # everything the door let in was sent, everything it refused was reported
            assert sent == len(group.rows)
            assert events == len(group.events)
            assert rejected == sum(group.rejected.values())
            assert ingest.readings_in + ingest.events_in == sent + events + rejected
        finally:
            buf.close()


def test_a_source_state_is_captured_as_the_group_is_taken():
    ingest = make()
    record: list[int] = []
    captured: list[bytes | None] = []

    def capture() -> bytes | None:
        state = bytes(record) if record else None
        captured.append(state)
        return state

    assert ingest.track_state("mq", capture) is None
    ingest.add(3, 1.0)
    record.append(1)  # the source records what it handed over, synchronously with the add
    group = ingest.take()
    assert group.rows
    assert group.states == {"mq": b"\x01"}
    record.clear()
    assert ingest.take().is_empty()  # unchanged (capture gave None): nothing to write
    # a failed commit gives the state back with its readings; a newer capture wins
    ingest.give_back(group)
    assert ingest.take().states == {"mq": b"\x01"}
    ingest.give_back(group)
    record.append(2)
    assert ingest.take().states == {"mq": b"\x02"}


async def test_state_changed_makes_committed_wait_for_the_next_group():
    clock = AgentClock(Wall(), lambda: True, kernel_boot_id="b", floor_ms=0, next_epoch_id=1)
    ingest = Ingest(
        clock, series={}, last_values={}, flush_max_readings=10, max_pending=20, states={"mq": b"s"}
    )
    assert ingest.track_state("mq", lambda: b"new") == b"s"  # what the buffer held at start
    await asyncio.wait_for(ingest.committed(), 1)  # nothing pending: returns at once
    ingest.state_changed()
    waiter = asyncio.create_task(ingest.committed())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    group = ingest.take()
    assert group.states == {"mq": b"new"}
    ingest.mark_committed(group)
    await asyncio.wait_for(waiter, 1)
