"""The redelivery record: what was committed, kept across restarts, refused when foreign or torn."""

from __future__ import annotations

# -- the redelivery record -------------------------------------------------------------------


def test_unacknowledged_entries_are_kept_however_many_come_after(tmp_path):
    from agent.sources.mqtt.seen import Seen, fingerprint

    seen = Seen(b"broker", keep_acked=4, enabled=True)
    first = seen.add(1, fingerprint("t", b"1"), gen=1)
    assert first is not None
    for mid in range(2, 50):  # a broker overshooting its window: all unacknowledged
        seen.add(mid, fingerprint("t", str(mid).encode()), gen=1)
    assert seen.match(1, fingerprint("t", b"1")) is first
    assert seen.match(1, fingerprint("t", b"other")) is None
    for mid in range(1, 50):
        entry = seen.match(mid, fingerprint("t", str(mid).encode()))
        assert entry is not None
        seen.acked(mid, entry)
    assert [m for m, _ in seen.snapshot()] == [46, 47, 48, 49]  # only the last 4 acked stay


def test_a_fresh_message_ends_the_redeliveries_of_older_connections(tmp_path):
    from agent.sources.mqtt.seen import Seen

    seen = Seen(b"broker", keep_acked=10, enabled=True)
    seen.add(7, 70, gen=1)  # handled, never acknowledged: its connection died
    acked = seen.add(8, 80, gen=1)
    assert acked is not None
    seen.acked(8, acked)
    seen.fresh(gen=2)  # connection 2 sent something new: 7 is not coming back
    assert seen.match(7, 70) is None
    assert seen.match(8, 80) is acked  # its PUBACK may still have been lost


def test_the_record_survives_a_restart_and_refuses_a_foreign_or_torn_one():
    from agent.sources.mqtt.seen import Seen

    seen = Seen(b"mqtt://a\0id", keep_acked=10, enabled=True)
    for mid in (1, 2, 3):
        seen.add(mid, mid * 11, gen=1)
    data = seen.capture()
    assert data is not None
    assert seen.capture() is None  # unchanged since: nothing to write
    again = Seen(b"mqtt://a\0id", keep_acked=10, enabled=True)
    assert again.load(data)
    assert [again.match(m, m * 11) is not None for m in (1, 2, 3)] == [True, True, True]
    other = Seen(b"mqtt://b\0id", keep_acked=10, enabled=True)
    assert not other.load(data)
    assert other.match(1, 11) is None
    torn = bytearray(data)
    torn[-1] ^= 0xFF  # the CRC no longer matches, nothing is trusted
    damaged = Seen(b"mqtt://a\0id", keep_acked=10, enabled=True)
    damaged.load(bytes(torn))
    assert damaged.match(3, 33) is None


def test_an_older_versions_side_file_is_read(tmp_path):
    from agent.sources.mqtt.seen import Seen

    seen = Seen(b"mqtt://a\0id", keep_acked=10, enabled=True)
    seen.add(5, 55, gen=1)
    path = tmp_path / "mq.mqtt-seen"
    path.write_bytes(seen.encode())  # the side file of 0.1.0 held the same bytes
    again = Seen(b"mqtt://a\0id", keep_acked=10, enabled=True)
    assert again.load_file(path)
    assert again.match(5, 55) is not None
    assert again.capture() is not None  # to be committed in the buffer
    assert not Seen(b"x", keep_acked=10, enabled=True).load_file(tmp_path / "none")
