"""The waiting-connection table and the head-size check, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.receiver.connections import ConnectionTable, TableLimits, address_key, head_fits

HEAD = b"POST /v1/batches HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"


def feed(data: bytes, limit: int) -> bool:
    """head_fits as the protocol applies it: on everything buffered so far, after each write."""
    buffered = b""
    for i in range(len(data)):
        buffered += data[i : i + 1]
        if not head_fits(buffered, limit):
            return False
    return True


@pytest.mark.parametrize("limit", [len(HEAD) - 3, 60])
def test_a_head_within_the_limit_fits_whole_and_byte_by_byte(limit: int) -> None:
    # the body after the head does not count, however much of it is buffered
    assert head_fits(HEAD + b"x" * 1000, limit)
    assert feed(HEAD + b"x" * 1000, limit)


def test_a_head_one_byte_over_the_limit_does_not_fit_whole_or_byte_by_byte() -> None:
    limit = len(HEAD) - 3 - 1  # the head ends one byte past the limit
    assert not head_fits(HEAD, limit)
    assert not feed(HEAD, limit)


def test_bare_lf_heads_are_measured_like_h11_reads_them() -> None:
    head = b"GET / HTTP/1.1\nhost: x\n\n"
    assert head_fits(head + b"y" * 100, len(head))
    assert not head_fits(head + b"y" * 100, len(head) - 1)


def test_an_unfinished_head_fits_until_it_passes_the_limit() -> None:
    assert head_fits(b"G" * 100, 100)
    assert not head_fits(b"G" * 101, 100)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=200))
def test_whole_and_byte_by_byte_agree(data: bytes, limit: int) -> None:
    assert head_fits(data, limit) == feed(data, limit)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.7", "127.0.0.7"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("/run/sock", "/run/sock"),
    ],
)
def test_address_keys(host: str, key: str) -> None:
    assert address_key(host) == key


def table(per_address: int = 2, total: int = 5) -> ConnectionTable[str]:
    return ConnectionTable(TableLimits(per_address, total))


def test_one_address_over_its_cap_loses_its_own_oldest_waiting_connection() -> None:
    t = table()
    assert t.wait("a1", "A") == []
    assert t.wait("a2", "A") == []
    assert t.wait("b1", "B") == []
    assert t.wait("a3", "A") == ["a1"]
    assert (t.waiting_from("A"), t.waiting_from("B"), t.waiting) == (2, 1, 3)


def test_over_the_total_cap_the_oldest_waiting_connection_goes() -> None:
    t = table(per_address=10, total=3)
    for conn, address in [("a1", "A"), ("b1", "B"), ("c1", "C")]:
        assert t.wait(conn, address) == []
    assert t.wait("d1", "D") == ["a1"]
    assert t.waiting == 3
    assert t.waiting_from("A") == 0


def test_handling_connections_are_never_evicted_and_count_per_address() -> None:
    t = table(per_address=2, total=10)
    t.wait("a1", "A")
    t.handle("a1")
    t.wait("a2", "A")
    t.wait("a3", "A")
    assert t.wait("a4", "A") == ["a2"]  # not a1: its request is being handled
    assert (t.requests_from("A"), t.handling, t.waiting) == (1, 1, 2)


def test_a_connection_back_from_handling_waits_at_the_back() -> None:
    t = table(per_address=2, total=10)
    t.wait("a1", "A")
    t.wait("a2", "A")
    t.handle("a1")
    t.wait("a1", "A")  # its response went out: a2 has now waited longest
    assert t.wait("a3", "A") == ["a2"]
    assert (t.requests_from("A"), t.handling) == (0, 0)


def test_closed_forgets_a_connection_in_either_state_and_twice_is_harmless() -> None:
    t = table()
    t.wait("a1", "A")
    t.wait("b1", "B")
    t.handle("b1")
    for conn in ("a1", "b1", "a1", "zz"):
        t.closed(conn)
    assert (t.waiting, t.handling, t.requests_from("B"), t.waiting_from("A")) == (0, 0, 0, 0)


def test_handle_of_an_unknown_or_handling_connection_changes_nothing() -> None:
    t = table()
    t.handle("zz")
    t.wait("a1", "A")
    t.handle("a1")
    t.handle("a1")
    assert (t.handling, t.requests_from("A")) == (1, 1)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["wait", "handle", "closed"]),
            st.integers(min_value=0, max_value=9),
            st.sampled_from("ABC"),
        ),
        max_size=80,
    )
)
def test_the_caps_hold_after_any_sequence(ops: list[tuple[str, int, str]]) -> None:
    limits = TableLimits(max_waiting_per_address=2, max_waiting=4)
    t: ConnectionTable[int] = ConnectionTable(limits)
    state: dict[int, str] = {}  # the model: conn -> "waiting"/"handling"
    where: dict[int, str] = {}
    for op, conn, address in ops:
        if op == "wait":
            address = where.get(conn, address)
            for gone in t.wait(conn, address):
                assert state.pop(gone) == "waiting"
                del where[gone]
            state[conn], where[conn] = "waiting", address
        elif op == "handle" and state.get(conn) == "waiting":
            t.handle(conn)
            state[conn] = "handling"
        elif op == "closed":
            t.closed(conn)
            state.pop(conn, None)
            where.pop(conn, None)
        waiting = [c for c, s in state.items() if s == "waiting"]
        assert t.waiting == len(waiting) <= limits.max_waiting
        assert t.handling == len(state) - len(waiting)
        for a in "ABC":
            mine = [c for c in waiting if where[c] == a]
            assert t.waiting_from(a) == len(mine) <= limits.max_waiting_per_address
            assert t.requests_from(a) == sum(
                1 for c, s in state.items() if s == "handling" and where[c] == a
            )
