from __future__ import annotations

import pytest

from firmware_bridge.errors import LocalProtocolError, RemoteProtocolError
from firmware_bridge.mcu_connection import NEED_DATA, Connection, Damaged, OutOfSequence, Role
from firmware_bridge.mcu_frames import (
    END_OF_BOOT,
    Ack,
    ChannelInfo,
    Hello,
    HelloAck,
    McuPosition,
    ReadingFrame,
    Resend,
    TimeSync,
    ValueType,
)
from firmware_bridge.mcu_vectors import wire_bytes


def reading(boot: int, seq: int, flags: int = 0) -> ReadingFrame:
    return ReadingFrame(boot, seq, 0, flags, 0, 1000 + seq, ValueType.F32, float(seq))


def hello_ack(first: tuple[int, int], boot: int = 7) -> HelloAck:
    return HelloAck(1, boot, 42, 0, first[0], first[1], 1, "t")


def feed(conn: Connection, *msgs: object, bytewise: bool = False) -> list[object]:
    data = b"".join(wire_bytes(m) for m in msgs)  # type: ignore[arg-type]
    if bytewise:
        for b in data:
            conn.receive_data(bytes([b]))
    else:
        conn.receive_data(data)
    out: list[object] = []
    while (ev := conn.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def delivered(events: list[object]) -> list[tuple[int, int]]:
    return [e.position for e in events if isinstance(e, ReadingFrame)]


@pytest.mark.parametrize("bytewise", [False, True])
def test_in_order_stream_is_delivered(bytewise: bool) -> None:
    conn = Connection(Role.BRIDGE)
    ready_before = conn.ready
    assert ready_before is False
    events = feed(conn, hello_ack((7, 0)), reading(7, 0), reading(7, 1), bytewise=bytewise)
    assert conn.ready
    assert delivered(events) == [(7, 0), (7, 1)]
    assert conn.last_delivered == (7, 1)


def test_readings_before_the_handshake_are_stale() -> None:
    conn = Connection(Role.BRIDGE)
    assert feed(conn, reading(7, 0)) == []
    assert conn.stats.stale == 1


def test_duplicates_are_dropped() -> None:
    conn = Connection(Role.BRIDGE)
    events = feed(
        conn, hello_ack((7, 0)), reading(7, 0), reading(7, 1), reading(7, 0), reading(7, 1)
    )
    assert delivered(events) == [(7, 0), (7, 1)]
    assert conn.stats.duplicates == 2


def test_gap_reports_once_and_waits_for_the_successor() -> None:
    conn = Connection(Role.BRIDGE)
    events = feed(conn, hello_ack((7, 0)), reading(7, 0), reading(7, 2), reading(7, 3))
    assert delivered(events) == [(7, 0)]
    gaps = [e for e in events if isinstance(e, OutOfSequence)]
    assert gaps == [OutOfSequence(McuPosition(7, 0), McuPosition(7, 2))]
    in_gap = conn.in_gap
    assert in_gap
    assert conn.rearm_gap() == OutOfSequence(McuPosition(7, 0), McuPosition(7, 0))
    # the replay after RESEND (7, 0): inclusive, so (7, 0) comes again as a duplicate
    events = feed(conn, reading(7, 0), reading(7, 1), reading(7, 2))
    assert delivered(events) == [(7, 1), (7, 2)]
    assert not conn.in_gap
    assert conn.rearm_gap() is None


def test_first_reading_must_be_the_announced_one() -> None:
    conn = Connection(Role.BRIDGE)
    events = feed(conn, hello_ack((6, 40)), reading(6, 41))
    assert events[-1] == OutOfSequence(None, McuPosition(6, 41))
    assert delivered(feed(conn, reading(6, 40), reading(6, 41))) == [(6, 40), (6, 41)]


def test_boot_change_needs_end_of_boot() -> None:
    conn = Connection(Role.BRIDGE)
    events = feed(conn, hello_ack((6, 40)), reading(6, 40), reading(7, 0))
    assert delivered(events) == [(6, 40)]
    assert isinstance(events[-1], OutOfSequence)
    # the replay marks (6, 40) as the last of boot 6; then (7, 0) is the successor
    events = feed(conn, reading(6, 40, END_OF_BOOT), reading(7, 0))
    assert delivered(events) == [(7, 0)]


def test_boot_change_after_end_of_boot() -> None:
    conn = Connection(Role.BRIDGE)
    events = feed(
        conn, hello_ack((6, 40)), reading(6, 40, END_OF_BOOT), reading(7, 0), reading(7, 1)
    )
    assert delivered(events) == [(6, 40), (7, 0), (7, 1)]
    # after END_OF_BOOT a later boot must still start at seq 0
    conn2 = Connection(Role.BRIDGE)
    events = feed(conn2, hello_ack((6, 40)), reading(6, 40, END_OF_BOOT), reading(7, 1))
    assert isinstance(events[-1], OutOfSequence)


def test_every_hello_ack_restarts_the_stream() -> None:
    conn = Connection(Role.BRIDGE)
    feed(conn, hello_ack((7, 0)), reading(7, 0), reading(7, 1))
    events = feed(conn, hello_ack((7, 1)), reading(7, 1), reading(7, 2))
    assert delivered(events) == [(7, 1), (7, 2)]


def test_damaged_frames_become_events() -> None:
    conn = Connection(Role.BRIDGE)
    bad = bytearray(wire_bytes(reading(7, 0)))
    bad[5] ^= 0xFF
    conn.receive_data(bytes(bad))
    event = conn.next_event()
    assert isinstance(event, Damaged)
    assert conn.stats.damaged == 1


def test_bridge_may_not_ack_before_handshake() -> None:
    conn = Connection(Role.BRIDGE)
    for msg in (Ack(1, 1), Resend(1, 1), TimeSync(1)):
        with pytest.raises(LocalProtocolError, match="before the handshake"):
            conn.send(msg)
    assert conn.send(Hello(1, 16, 0)).startswith(b"\x00")
    feed(conn, hello_ack((7, 0)))
    assert conn.send(Ack(7, 0))


def test_sides_may_not_send_the_other_sides_messages() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(Role.BRIDGE).send(reading(1, 1))
    with pytest.raises(LocalProtocolError):
        Connection(Role.MCU).send(Hello(1, 1, 0))
    with pytest.raises(LocalProtocolError):
        Connection(Role.MCU).send(Ack(1, 1))


def test_peer_sending_our_messages_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError, match="bridge message") as info:
        Connection(Role.BRIDGE).receive_data(wire_bytes(Hello(1, 1, 0)))
    assert info.value.remote
    with pytest.raises(RemoteProtocolError, match="MCU message"):
        Connection(Role.MCU).receive_data(wire_bytes(ChannelInfo(0, "m", "u")))


def test_unsupported_version_in_hello_ack() -> None:
    with pytest.raises(RemoteProtocolError, match="version 9"):
        Connection(Role.BRIDGE).receive_data(wire_bytes(HelloAck(9, 1, 1, 0, 1, 0, 1, "x")))
