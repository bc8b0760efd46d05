"""The MCU protocol's connection state machine, h11-style: bytes in, events out; events in,
bytes out. No I/O, no clock, no asyncio.

    conn = Connection(Role.BRIDGE)
    port.write(conn.send(Hello(...)))
    conn.receive_data(chunk)
    while (event := conn.next_event()) is not NEED_DATA: ...

Events are the messages of `mcu_frames` plus two of this module's own: `Damaged` (a frame was
lost to line noise) and `OutOfSequence` (a reading arrived that is not the next one).

Invariants (bridge role):
- Readings are delivered in stream order, each at most once per session: a reading is an event
  only if it is the successor of the last one delivered — (boot, seq + 1), or (boot' > boot, 0)
  right after a reading flagged END_OF_BOOT — or, as the session's first, exactly the position
  HELLO_ACK announced. Anything at or before the last delivered position is a duplicate (counted,
  dropped); anything beyond the successor is a gap: `OutOfSequence` is emitted once, later
  readings are dropped until the successor arrives, and the caller sends RESEND.
- Every HELLO_ACK (re)starts the stream at its `first` position: the MCU rewinds its send pointer
  to the oldest unacknowledged reading whenever it answers HELLO.
- Readings before the first HELLO_ACK are stale bytes of an earlier session: counted, dropped.
- The bridge may send ACK, RESEND and TIME_SYNC only once a HELLO_ACK has arrived, and never an
  MCU-side message (LocalProtocolError). A bridge-side message arriving at the bridge, or a
  HELLO_ACK of a protocol version we do not speak, is a RemoteProtocolError.

The MCU role (used by the emulator) only checks direction; the firmware's own rules (answer
non-HELLO frames with HANDSHAKE_REQUIRED before HELLO) live in the emulator, as they would in C.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from firmware_bridge.errors import FrameError, LocalProtocolError, RemoteProtocolError
from firmware_bridge.framing import FrameDecoder, encode_frame
from firmware_bridge.mcu_frames import (
    END_OF_BOOT,
    PROTOCOL_VERSION,
    Ack,
    ChannelInfo,
    ErrorFrame,
    Hello,
    HelloAck,
    McuPosition,
    Message,
    ReadingFrame,
    Resend,
    TimeSync,
    TimeSyncAck,
    decode_body,
    encode_body,
)


class Role(enum.Enum):
    BRIDGE = "bridge"
    MCU = "mcu"


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

BRIDGE_SENDS = (Hello, Ack, Resend, TimeSync, ErrorFrame)
MCU_SENDS = (HelloAck, ReadingFrame, TimeSyncAck, ChannelInfo, ErrorFrame)


@dataclass(frozen=True, slots=True)
class Damaged:
    """A frame was dropped (bad CRC, bad COBS, impossible layout); `reason` says why."""

    reason: str


@dataclass(frozen=True, slots=True)
class OutOfSequence:
    """A reading arrived that is not the next one: send RESEND from `resend_from`."""

    resend_from: McuPosition | None  # None: nothing delivered this session; say HELLO again
    got: McuPosition


Event = Message | Damaged | OutOfSequence


@dataclass(slots=True)
class ConnectionStats:
    readings: int = 0  # delivered as events
    duplicates: int = 0
    gaps: int = 0  # OutOfSequence events
    dropped_in_gap: int = 0  # readings dropped while waiting for the successor
    stale: int = 0  # readings before the first HELLO_ACK
    damaged: int = 0


class Connection:
    """One side of an MCU link. Not thread-safe; one instance per open port."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self._decoder = FrameDecoder()
        self._events: deque[Event] = deque()
        self.stats = ConnectionStats()
        self.hello_ack: HelloAck | None = None  # the current session, bridge role
        self._expect_first: McuPosition | None = None
        self._last: McuPosition | None = None
        self._last_eob = False
        self._in_gap = False

    @property
    def framing(self) -> FrameDecoder:
        return self._decoder

    @property
    def ready(self) -> bool:
        """Bridge role: a HELLO_ACK arrived, so ACK/RESEND/TIME_SYNC may be sent."""
        return self.hello_ack is not None

    @property
    def last_delivered(self) -> McuPosition | None:
        return self._last

    @property
    def in_gap(self) -> bool:
        """A gap was reported and its successor has not arrived yet."""
        return self._in_gap

    def send(self, msg: Message) -> bytes:
        """The bytes that carry `msg`; LocalProtocolError if this side may not send it now."""
        allowed = BRIDGE_SENDS if self.role is Role.BRIDGE else MCU_SENDS
        if not isinstance(msg, allowed):
            raise LocalProtocolError(f"the {self.role.value} never sends {type(msg).__name__}")
        if self.role is Role.BRIDGE and isinstance(msg, Ack | Resend | TimeSync) and not self.ready:
            raise LocalProtocolError(f"{type(msg).__name__} before the handshake completed")
        return encode_frame(encode_body(msg))

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the port; RemoteProtocolError if the peer broke a rule."""
        for item in self._decoder.feed(data):
            if isinstance(item, FrameError):
                self.stats.damaged += 1
                self._events.append(Damaged(str(item)))
                continue
            try:
                msg = decode_body(item)
            except FrameError as exc:
                self.stats.damaged += 1
                self._events.append(Damaged(str(exc)))
                continue
            self._receive(msg)

    def next_event(self) -> Event | _NeedData:
        """The next event, or NEED_DATA when everything fed so far has been handed out."""
        return self._events.popleft() if self._events else NEED_DATA

    def _receive(self, msg: Message) -> None:
        if self.role is Role.MCU:
            if not isinstance(msg, BRIDGE_SENDS):
                raise RemoteProtocolError(f"the bridge sent {type(msg).__name__}, an MCU message")
            self._events.append(msg)
            return
        if not isinstance(msg, MCU_SENDS):
            raise RemoteProtocolError(f"the MCU sent {type(msg).__name__}, a bridge message")
        if isinstance(msg, ReadingFrame):
            self._receive_reading(msg)
            return
        if isinstance(msg, HelloAck):
            if msg.version != PROTOCOL_VERSION:
                raise RemoteProtocolError(
                    f"the MCU chose protocol version {msg.version}; we speak {PROTOCOL_VERSION}"
                )
            self.hello_ack = msg
            self._expect_first = McuPosition(msg.first_boot, msg.first_seq)
            self._last = None
            self._last_eob = False
            self._in_gap = False
        self._events.append(msg)

    def _receive_reading(self, r: ReadingFrame) -> None:
        if self.hello_ack is None:
            self.stats.stale += 1
            return
        pos = r.position
        last = self._last
        if last is None:
            successor = pos == self._expect_first
            duplicate = self._expect_first is not None and pos < self._expect_first
        else:
            if pos == last and r.flags & END_OF_BOOT:
                self._last_eob = True  # a RESEND replay told us what the first pass could not
            duplicate = pos <= last
            if pos[0] == last[0]:
                successor = pos[1] == last[1] + 1
            else:
                successor = pos[0] > last[0] and pos[1] == 0 and self._last_eob
        if successor:
            self._last = pos
            self._last_eob = bool(r.flags & END_OF_BOOT)
            self._in_gap = False
            self.stats.readings += 1
            self._events.append(r)
        elif duplicate:
            self.stats.duplicates += 1
        elif self._in_gap:
            self.stats.dropped_in_gap += 1
        else:
            self._in_gap = True
            self.stats.gaps += 1
            self.stats.dropped_in_gap += 1
            self._events.append(OutOfSequence(last, pos))

    def rearm_gap(self) -> OutOfSequence | None:
        """While in a gap, the event to act on again (the RESEND may have been lost)."""
        if not self._in_gap:
            return None
        return OutOfSequence(self._last, self._last or McuPosition(0, 0))
