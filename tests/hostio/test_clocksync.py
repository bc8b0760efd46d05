"""The clock's sync state: adjtimex's answer decoded from byte vectors, the modes on real files."""

from __future__ import annotations

import ctypes
import sys

import pytest

from hostio.clocksync import kernel_synced, sync_state, timex_synced

_LONG = ctypes.sizeof(ctypes.c_long)
STATUS_AT = 40 if _LONG == 8 else 20
TIME_OK, TIME_ERROR, STA_UNSYNC, STA_PLL = 0, 5, 0x0040, 0x0001


def timex(status: int) -> bytes:
    buf = bytearray(512)
    buf[STATUS_AT : STATUS_AT + 4] = status.to_bytes(4, sys.byteorder, signed=True)
    return bytes(buf)


@pytest.mark.parametrize(
    ("state", "status", "synced"),
    [
        (TIME_OK, STA_PLL, True),
        (1, 0, True),  # TIME_INS: a leap second pending is still synchronised
        (TIME_OK, STA_PLL | STA_UNSYNC, False),
        (TIME_ERROR, STA_PLL, False),
        (TIME_ERROR, STA_UNSYNC, False),
    ],
)
def test_timex_verdict(state, status, synced):
    assert timex_synced(state, timex(status)) is synced


def test_status_is_read_at_its_offset_only():
    buf = bytearray(b"\xff" * 512)
    buf[STATUS_AT : STATUS_AT + 4] = bytes(4)
    assert timex_synced(TIME_OK, bytes(buf)) is True


def test_the_kernel_answers_on_linux():
    assert kernel_synced() in (True, False)


def test_modes(tmp_path):
    flag = tmp_path / "synchronized"
    asked: list[str] = []

    def kernel(answer):
        def probe():
            asked.append("kernel")
            return answer

        return probe

    assert sync_state("assume_synced", flag_file=str(flag), kernel=kernel(False)) is True
    assert sync_state("receiver_only", flag_file=str(flag), kernel=kernel(True)) is None
    assert asked == []  # neither mode asks anything
    assert sync_state("timesyncd", flag_file=str(flag), kernel=kernel(True)) is False
    assert sync_state("adjtimex", flag_file=str(flag), kernel=kernel(None)) is None
    assert sync_state("auto", flag_file=str(flag), kernel=kernel(True)) is True
    assert sync_state("auto", flag_file=str(flag), kernel=kernel(None)) is None
    flag.touch()
    assert sync_state("timesyncd", flag_file=str(flag), kernel=kernel(False)) is True
    asked.clear()
    assert sync_state("auto", flag_file=str(flag), kernel=kernel(False)) is True
    assert asked == []  # the flag file settles it
