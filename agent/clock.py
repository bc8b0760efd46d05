"""Clock trust: which timestamp a reading gets, and whether it can be believed.

Three states (`wire.models.ClockState`):
- SYNCED: the kernel says NTP keeps the wall clock (`hostio.clocksync`: timesyncd's flag file,
  or adjtimex without STA_UNSYNC). Readings get the wall clock.
- CORRECTED: not NTP-synced, but the receiver told us its time (`server_time_ms` in an ack).
  Readings get the receiver's time extrapolated with the monotonic clock:
  `ref_ms + (mono - ref_mono)`, within half a round trip plus monotonic drift (tens of ppm).
- UNTRUSTED: no reference at all. Readings are kept, flagged `TIME_UNTRUSTED`, and stamped on an
  *untrusted epoch*: `base_ms + (mono - base_mono)`, where `base_ms` is the wall clock at entry but
  never earlier than the floor (the newest timestamp the buffer ever held, or this code's release
  date). So a Pi that boots at 1970 produces flagged, plausible, strictly increasing timestamps,
  never a silent 1970 date.

Correction: an epoch's timestamps are a fixed offset from true time (both advance with the
monotonic clock), so once any reference arrives the whole epoch is fixed by one `delta_ms`. The
epoch number rides in the quality column of its readings (`quality >> 8`; the wire code is the low
byte), the buffer stores `(epoch, kernel boot id, base)` and applies the delta when it cuts a
batch, clearing the flag. Monotonic time is comparable only within one kernel boot, so only epochs
of the current boot are corrected; older ones ship flagged. Readings already cut into a batch
before the correction arrived ship flagged too: a frozen batch is never rewritten.

No I/O except in the sync checks, which are injectable; time comes from a `TimeSource`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hostio.clocksync import sync_state
from wire.models import MIN_TS_MS, TIME_UNTRUSTED, ClockState

# Nothing this agent ever measured happened before its release: the lowest floor for timestamps.
RELEASE_FLOOR_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
EPOCH_SHIFT = 8  # quality = wire code | epoch << EPOCH_SHIFT
WIRE_QUALITY_MASK = (1 << EPOCH_SHIFT) - 1

SyncCheck = Callable[[], bool]


class TimeSource(Protocol):
    def wall_ms(self) -> int: ...
    def mono_ms(self) -> int: ...


class SystemTime:
    """The real clocks. CLOCK_MONOTONIC is system-wide on Linux, so it survives agent restarts."""

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Epoch:
    """A stretch of untrusted time: timestamps are `base_ms + (mono - base_mono_ms)`."""

    id: int
    kernel_boot_id: str
    base_ms: int
    base_mono_ms: int


@dataclass(frozen=True, slots=True)
class Reference:
    """The receiver's time `ref_ms` as it was at our monotonic `ref_mono_ms`."""

    ref_ms: int
    ref_mono_ms: int


def epoch_delta(epoch: Epoch, reference: Reference) -> int:
    """What to add to an epoch's timestamps to make them true (same kernel boot only)."""
    return (reference.ref_ms - reference.ref_mono_ms) - (epoch.base_ms - epoch.base_mono_ms)


class AgentClock:
    """Stamps readings and tracks trust. Not thread-safe: used from the event loop only."""

    def __init__(
        self,
        source: TimeSource,
        sync_check: SyncCheck,
        *,
        kernel_boot_id: str,
        floor_ms: int,
        next_epoch_id: int,
    ) -> None:
        self._source = source
        self._sync_check = sync_check
        self.kernel_boot_id = kernel_boot_id
        self._floor_ms = max(floor_ms, RELEASE_FLOOR_MS, MIN_TS_MS)
        self._next_epoch_id = next_epoch_id
        self._synced = False
        self._ever_trusted = False
        self._reference: Reference | None = None
        self.epoch: Epoch | None = None
        self.offset_ms = 0  # wall clock minus receiver time, once known
        self.new_epochs: list[Epoch] = []  # created since the last take_new_epochs()
        self.references: list[Reference] = []  # trusted references since the last take
        self.refresh()

    @property
    def state(self) -> ClockState:
        if self._synced:
            return ClockState.SYNCED
        if self._reference is not None:
            return ClockState.CORRECTED
        return ClockState.UNTRUSTED

    def refresh(self) -> None:
        """Re-read the NTP state (call every few seconds)."""
        try:
            synced = self._sync_check()
        except OSError:
            synced = False
        self._synced = synced
        if synced:
            mono = self._source.mono_ms()
            self._trusted(Reference(self._source.wall_ms(), mono))
        elif self._reference is None and self.epoch is None:
            self._start_epoch()

    def observe_server_time(self, server_ms: int, sent_mono_ms: int, recv_mono_ms: int) -> None:
        """Learn from a receiver response; the midpoint of the round trip is the best guess."""
        mid = (sent_mono_ms + recv_mono_ms) // 2
        wall_at_mid = self._source.wall_ms() - (self._source.mono_ms() - mid)
        self.offset_ms = wall_at_mid - server_ms
        if not self._synced:
            self._trusted(Reference(server_ms, mid))

    def now(self) -> tuple[int, int]:
        """(timestamp ms, quality bits to OR into the reading's code) for a reading taken now."""
        if self._synced:
            return self._source.wall_ms(), 0
        mono = self._source.mono_ms()
        if self._reference is not None:
            return self._reference.ref_ms + (mono - self._reference.ref_mono_ms), 0
        epoch = self.epoch if self.epoch is not None else self._start_epoch()
        return (
            epoch.base_ms + (mono - epoch.base_mono_ms),
            TIME_UNTRUSTED | (epoch.id << EPOCH_SHIFT),
        )

    def now_ms(self) -> int:
        """Best estimate of true time, for signature `created` and logs."""
        return self.now()[0]

    def take_new_epochs(self) -> list[Epoch]:
        out, self.new_epochs = self.new_epochs, []
        return out

    def take_references(self) -> list[Reference]:
        out, self.references = self.references, []
        return out

    def _trusted(self, reference: Reference) -> None:
        if self.epoch is not None or not self._ever_trusted:
            # Leaving an untrusted stretch, or trusted for the first time in this process: the
            # buffer corrects every open epoch of this kernel boot (earlier runs included).
            self.references.append(reference)
        self._ever_trusted = True
        self.epoch = None
        # Kept even while synced: if NTP is lost later, time continues from the last good
        # reading by the monotonic clock (CORRECTED) instead of falling back to untrusted.
        self._reference = reference

    def _start_epoch(self) -> Epoch:
        mono = self._source.mono_ms()
        epoch = Epoch(
            self._next_epoch_id,
            self.kernel_boot_id,
            max(self._source.wall_ms(), self._floor_ms),
            mono,
        )
        self._next_epoch_id += 1
        self.epoch = epoch
        self.new_epochs.append(epoch)
        return epoch


def read_kernel_boot_id(path: str) -> str:
    """The kernel's boot id, or a fresh random one if the file cannot be read (then no epoch of
    an earlier agent run will be corrected, which is the safe side)."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() or os.urandom(16).hex()
    except (OSError, UnicodeDecodeError):
        return os.urandom(16).hex()


def make_sync_check(mode: str, *, flag_file: str) -> SyncCheck:
    """The check named by `clock.sync_check` in the config (`hostio.clocksync.sync_state`):
    synced only on a definite yes; "cannot tell" and `receiver_only` count as not synced."""
    return lambda: sync_state(mode, flag_file=flag_file) is True
