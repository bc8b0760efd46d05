"""Whether this machine's wall clock is kept by NTP: one probe for the agent and `edgectl doctor`.

Two sources, both read-only and needing no privilege:
- the kernel, through adjtimex(2) with `modes = 0` (it only reads): synchronised when the call
  does not return TIME_ERROR and STA_UNSYNC is clear. Whichever daemon disciplines the clock
  (chrony, ntpd, systemd-timesyncd) keeps these up to date;
- systemd-timesyncd's flag file, which it creates once it has synchronised the clock.

`clock.sync_check` in agent.toml picks how they combine (`sync_state`). "Cannot tell" is `None`,
never an exception: a probe that fails must not stop the agent, and the agent treats it as
not synchronised (the safe side: readings are flagged until the receiver's time corrects them).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from typing import Literal

SyncCheck = Literal["auto", "timesyncd", "adjtimex", "assume_synced", "receiver_only"]
TIMESYNCD_FLAG_FILE = "/run/systemd/timesync/synchronized"

_TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
_STA_UNSYNC = 0x0040
# struct timex (208 bytes on 64-bit Linux; 512 leaves room on any ABI). `status` is the int
# after `modes` (padded to a long) and four longs: offset 40 on LP64, 20 on ILP32.
_TIMEX_BYTES = 512
_LONG = ctypes.sizeof(ctypes.c_long)
_STATUS_OFFSET = 8 + 4 * _LONG if _LONG == 8 else 20


def timex_synced(state: int, timex: bytes) -> bool:
    """The verdict from adjtimex's return value and the struct it filled (sans I/O)."""
    raw = timex[_STATUS_OFFSET : _STATUS_OFFSET + 4]
    status = int.from_bytes(raw, sys.byteorder, signed=True)
    return state != _TIME_ERROR and not status & _STA_UNSYNC


def kernel_synced() -> bool | None:
    """The kernel's NTP state via adjtimex(2); None if it cannot tell (no such call here)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(_TIMEX_BYTES)  # zeroed: modes = 0 only reads
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return timex_synced(state, buf.raw)


def timesyncd_synced(flag_file: str = TIMESYNCD_FLAG_FILE) -> bool:
    """Whether systemd-timesyncd's flag file exists."""
    return os.path.exists(flag_file)


def sync_state(
    mode: str,
    *,
    flag_file: str = TIMESYNCD_FLAG_FILE,
    kernel: Callable[[], bool | None] = kernel_synced,
) -> bool | None:
    """The local clock's sync state as `clock.sync_check = mode` defines it.

    - `assume_synced`: True, nothing is asked (the host keeps time some other way);
    - `receiver_only`: None, nothing is asked (only the receiver's time is trusted);
    - `timesyncd`: the flag file; `adjtimex`: the kernel (None if it cannot tell);
    - `auto` (and anything else): the flag file if present, else the kernel.
    `kernel` is injectable so that tests need not depend on this machine's clock.
    """
    if mode == "assume_synced":
        return True
    if mode == "receiver_only":
        return None
    if mode == "timesyncd":
        return timesyncd_synced(flag_file)
    if mode == "adjtimex":
        return kernel()
    return timesyncd_synced(flag_file) or kernel()
