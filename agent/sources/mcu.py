"""The MCU source: our firmware's readings over a serial port, exactly once into the buffer.

One task owns the port. It opens it (backoff while it is missing or busy), says HELLO, turns
READING frames into readings and adds them to the sink, then stages their position with the
`Watermarks` it was given (`BufferWatermarks` commits it in the same transaction as the readings).
A second task, the acker, awaits `sink.committed()` for each batch in order and only then has the
bridge send ACK, which lets the MCU delete them. The reader never waits for a flush: the MCU's
window bounds what is in flight. So:

- nothing is lost between MCU and buffer: the MCU holds every reading until an ACK covers it, and
  replays all unacknowledged ones after every HELLO (reconnect, bridge restart, MCU reboot);
- nothing is delivered twice: within a process, readings at or before the last delivered
  position of that MCU (uid) are dropped; across bridge restarts, readings at or before the
  committed position in `Watermarks` are dropped and acknowledged again at once. Exactly once
  across crashes needs the position committed with the readings (`BufferWatermarks`, see
  `agent.watermarks`); `FileWatermarks` (a separate fsync'ed file) leaves a window of duplicates
  if the process dies between the buffer commit and the file write;
- an MCU whose boot counter went backwards (flash wiped, board swapped with the same uid) has its
  watermark forgotten, counted in `stats.history_resets`, rather than all its readings dropped.

Time: readings stamped in UTC by the MCU keep their time (TIME_UNTRUSTED if the MCU was synced
from an untrusted clock). Readings stamped in ms since boot are mapped with the offset learned in
the current boot's handshake and TIME_SYNC round trips (midpoint rule); readings from an earlier
boot that was never synced cannot be mapped and get the receive time, flagged TIME_UNTRUSTED.

Gaps (`agent.sources.gaps`): a port lost or unopenable (reason `port_lost`) or no frame for
`dead_after_ms` (reason `silent`) is a `source_down` event and one log line; the next completed
handshake is `source_up` with how long the MCU was gone. Nothing is missing in between: the MCU
keeps its readings until acknowledged and replays them, so the events mark a delay, not a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.sources import Sink, Stamper, add_readings
from agent.sources.gaps import Gaps, GapStats, Reason
from agent.sources.throttle import LogThrottle
from agent.watermarks import Watermarks
from firmware_bridge.backoff import Backoff
from firmware_bridge.errors import PortError, PortLostError, RemoteProtocolError
from firmware_bridge.mcu_config import McuConfig
from firmware_bridge.mcu_connection import (
    NEED_DATA,
    Connection,
    Damaged,
    OutOfSequence,
    Role,
)
from firmware_bridge.mcu_frames import (
    CLOCK_UNTRUSTED,
    PROTOCOL_VERSION,
    TS_UNTRUSTED,
    TS_UTC,
    Ack,
    ChannelInfo,
    ErrorCode,
    ErrorFrame,
    Hello,
    HelloAck,
    McuPosition,
    Message,
    ReadingFrame,
    Resend,
    TimeSync,
    TimeSyncAck,
)
from firmware_bridge.port import PortStats, SerialPort
from wire.models import MAX_TS_MS, MIN_TS_MS, TIME_UNTRUSTED, Quality, Reading, SeriesKey


@dataclass(slots=True)
class McuStats:
    port: PortStats = field(default_factory=PortStats)
    sessions: int = 0  # handshakes completed
    hellos: int = 0
    readings: int = 0  # added to the sink
    duplicates: int = 0  # replays of delivered or committed readings, dropped
    gaps: int = 0
    resends: int = 0
    damaged_frames: int = 0
    discarded_bytes: int = 0
    stale_frames: int = 0
    acks_sent: int = 0
    time_syncs: int = 0
    unmapped_time: int = 0  # readings stamped with the receive time
    non_finite: int = 0  # NaN/inf values, sent as BAD 0.0
    mcu_errors: dict[int, int] = field(default_factory=dict)
    mcu_data_lost: int = 0  # readings the MCU reported discarding (its storage was full)
    history_resets: int = 0
    protocol_errors: int = 0
    reopens: int = 0
    outages: GapStats = field(default_factory=GapStats)  # source_down / source_up events


@dataclass(slots=True)
class _McuTimeOffset:
    """MCU time (ms since the MCU booted) to UTC, for one boot: learned at HELLO, refined by
    every TIME_SYNC round trip."""

    boot: int
    ms: int  # UTC = mcu_ms + ms
    bits: int  # the clock's quality bits at the sync


@dataclass(slots=True)
class _Session:
    conn: Connection
    port: SerialPort
    opened: float
    heard: float
    hello_at: float = 0.0
    hello_wall: tuple[int, int] = (0, 0)
    uid: int | None = None
    boot: int = 0
    offset: _McuTimeOffset | None = None
    syncs: dict[int, tuple[float, int]] = field(default_factory=dict)  # utc_ms → (mono, bits)
    sync_at: float = 0.0
    probe_at: float = 0.0
    gap_at: float = 0.0
    ack_sent: McuPosition | None = None
    ack_at: float = 0.0
    channel_info: dict[int, ChannelInfo] = field(default_factory=dict)


class McuSource:
    """Reads one MCU. `run(sink)` until cancelled; see the module docstring for the guarantees."""

    def __init__(
        self,
        config: McuConfig,
        *,
        clock: Stamper,
        watermarks: Watermarks,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._watermarks = watermarks
        self._rng = rng
        self._log = logger or logging.getLogger(__name__)
        self._throttle = LogThrottle(self._log)
        self.stats = McuStats()
        self.tap: Callable[[str], None] | None = None  # `edge-agent probe`: decoded frames
        self._delivered: dict[int, McuPosition] = {}  # per uid, this process
        self._committed: dict[int, McuPosition] = {}  # per uid, committed by the sink
        self._pending: asyncio.Queue[tuple[int, McuPosition]] = asyncio.Queue()  # for the acker
        self._wake = asyncio.Event()
        self._series: dict[int, SeriesKey] = {}
        self.firmware: str = ""
        self.uid: int | None = None
        self.gaps = Gaps(self.name, clock=clock, logger=self._log, stats=self.stats.outages)
        self._lost_reason: Reason = "port_lost"

    async def run(self, sink: Sink) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._acker(sink), name=f"{self.name} acker")
            tg.create_task(self._bridge(sink), name=f"{self.name} bridge")

    async def _acker(self, sink: Sink) -> None:
        """Batches in order: once the sink has committed one, ACK up to its position."""
        while True:
            uid, position = await self._pending.get()
            await sink.committed()
            self._commit(uid, position)

    async def _bridge(self, sink: Sink) -> None:
        cfg = self.config
        backoff = Backoff(cfg.reopen_initial_ms / 1000, cfg.reopen_max_ms / 1000, self._rng)
        while True:
            try:
                port = SerialPort.open(cfg.port, self.stats.port)
            except PortError as exc:
                if not self.gaps.down(sink, "port_lost", str(exc)):
                    self._throttle.warning("open", "%s: %s", cfg.name, exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            self._lost_reason = "port_lost"
            try:
                await self._session(port, sink, backoff)
            except* PortError as group:
                self.gaps.down(sink, self._lost_reason, str(group.exceptions[0]))
            except* RemoteProtocolError as group:
                self.stats.protocol_errors += 1
                self._throttle.warning(
                    "protocol", "%s: the MCU broke the protocol: %s", cfg.name, group.exceptions[0]
                )
            finally:
                port.close()
            self.stats.reopens += 1
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, port: SerialPort, sink: Sink, backoff: Backoff) -> None:
        now = asyncio.get_running_loop().time()
        s = _Session(Connection(Role.BRIDGE), port, opened=now, heard=now)
        await self._hello(s)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._reader(s, sink, backoff), name=f"{self.config.name} reader")
            tg.create_task(self._ticker(s), name=f"{self.config.name} ticker")

    # -- reading ----------------------------------------------------------------------------

    async def _reader(self, s: _Session, sink: Sink, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        conn = s.conn
        while True:
            data = await s.port.read()
            s.heard = loop.time()
            self.gaps.heard()  # a later loss is measured from here
            discarded, stale = conn.framing.stats.discarded_bytes, conn.stats.stale
            conn.receive_data(data)
            self.stats.discarded_bytes += conn.framing.stats.discarded_bytes - discarded
            self.stats.stale_frames += conn.stats.stale - stale
            readings: list[Reading] = []
            last: McuPosition | None = None
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, ReadingFrame):
                    if self.tap is not None:
                        self.tap(
                            f"reading frame boot {event.boot} seq {event.seq} channel "
                            f"{event.channel} {event.vtype.name} raw {event.raw!r} exp {event.exp}"
                            f" quality {event.quality} mcu ms {event.ts_ms}"
                        )
                    if self._accept(s, event):
                        readings.append(self._to_reading(s, event))
                        last = event.position
                elif isinstance(event, HelloAck):
                    await self._on_hello_ack(s, event)
                    backoff.reset()
                    self.gaps.up(sink)
                elif isinstance(event, TimeSyncAck):
                    self._on_time_sync_ack(s, event)
                elif isinstance(event, ChannelInfo):
                    s.channel_info[event.channel] = event
                    self._series.pop(event.channel, None)
                elif isinstance(event, ErrorFrame):
                    await self._on_error(s, event)
                elif isinstance(event, OutOfSequence):
                    self.stats.gaps += 1
                    await self._resend(s)
                elif isinstance(event, Damaged):
                    self.stats.damaged_frames += 1
                    if conn.ready and not conn.in_gap:
                        await self._resend(s)
            if readings and last is not None and s.uid is not None:
                self.stats.readings += len(readings)
                add_readings(sink, readings)
                self._watermarks.stage(s.uid, last)  # committed with these readings, or not at all
                self._pending.put_nowait((s.uid, last))

    def _accept(self, s: _Session, r: ReadingFrame) -> bool:
        uid = s.uid
        if uid is None:
            return False
        floor = self._delivered.get(uid)
        if floor is not None and r.position <= floor:
            self.stats.duplicates += 1
            return False
        self._delivered[uid] = r.position
        return True

    def _to_reading(self, s: _Session, r: ReadingFrame) -> Reading:
        value = r.value
        quality = r.quality
        if not math.isfinite(value):
            value, quality = 0.0, Quality.BAD
            self.stats.non_finite += 1
        if r.flags & TS_UTC:
            ts = r.ts_ms
            if r.flags & TS_UNTRUSTED:
                quality |= TIME_UNTRUSTED
        elif s.offset is not None and s.offset.boot == r.boot:
            ts = r.ts_ms + s.offset.ms
            quality |= s.offset.bits
        else:
            ts = MIN_TS_MS - 1  # unmappable; stamped below
        if not MIN_TS_MS <= ts <= MAX_TS_MS:
            self.stats.unmapped_time += 1
            ts, bits = self._clock.now()
            quality |= bits | TIME_UNTRUSTED
        return Reading(self._series_key(s, r.channel), ts, value, quality)

    def _series_key(self, s: _Session, channel: int) -> SeriesKey:
        key = self._series.get(channel)
        if key is not None:
            return key
        cfg = self.config
        ch = cfg.channels.get(str(channel))
        info = s.channel_info.get(channel)
        if ch is not None:
            metric, unit = ch.metric, ch.unit or (info.unit if info else "")
            tags = (ch.site or cfg.site, ch.area or cfg.area, ch.process or cfg.process)
            medium = ch.medium or cfg.medium
        else:
            metric = info.metric if info and info.metric else f"{cfg.name}_ch{channel}"
            unit = info.unit if info else ""
            tags, medium = (cfg.site, cfg.area, cfg.process), cfg.medium
        key = SeriesKey(metric, unit, tags[0], tags[1], tags[2], medium)
        self._series[channel] = key
        return key

    # -- control ----------------------------------------------------------------------------

    async def _send(self, s: _Session, msg: Message) -> None:
        await s.port.write(s.conn.send(msg))

    async def _hello(self, s: _Session) -> None:
        wall, bits = self._clock.now()
        s.hello_at = asyncio.get_running_loop().time()
        s.hello_wall = (wall, bits)
        self.stats.hellos += 1
        flags = CLOCK_UNTRUSTED if bits & TIME_UNTRUSTED else 0
        await self._send(s, Hello(PROTOCOL_VERSION, self.config.window, wall, flags))

    async def _on_hello_ack(self, s: _Session, ack: HelloAck) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.stats.sessions += 1
        if s.uid != ack.uid:
            s.channel_info.clear()
            self._series.clear()
        s.uid, s.boot = ack.uid, ack.boot
        self.uid, self.firmware = ack.uid, ack.firmware
        committed = self._committed.get(ack.uid) or self._watermarks.load(ack.uid)
        if committed is not None and ack.boot < committed[0]:
            self.stats.history_resets += 1
            self._log.warning(
                "%s: MCU %016x booted as %d but readings of boot %d are committed; "
                "its history was reset, forgetting the old watermark",
                self.config.name,
                ack.uid,
                ack.boot,
                committed[0],
            )
            self._watermarks.forget(ack.uid)
            self._committed.pop(ack.uid, None)
            self._delivered.pop(ack.uid, None)
            committed = None
        if committed is not None:
            self._committed[ack.uid] = committed
            delivered = self._delivered.get(ack.uid)
            if delivered is None or delivered < committed:
                self._delivered[ack.uid] = committed
        wall, bits = s.hello_wall
        mid = (s.hello_at + now) / 2
        s.offset = _McuTimeOffset(
            ack.boot, round(wall + (mid - s.hello_at) * 1000) - ack.mcu_ms, bits
        )
        s.ack_sent = None
        if committed is not None:
            await self._send_ack(s, committed)
        await self._time_sync(s)

    def _on_time_sync_ack(self, s: _Session, ack: TimeSyncAck) -> None:
        sent = s.syncs.pop(ack.utc_ms, None)
        if sent is None:
            return
        mono, bits = sent
        now = asyncio.get_running_loop().time()
        s.offset = _McuTimeOffset(s.boot, round(ack.utc_ms + (now - mono) * 500) - ack.mcu_ms, bits)

    async def _time_sync(self, s: _Session) -> None:
        wall, bits = self._clock.now()
        now = asyncio.get_running_loop().time()
        while len(s.syncs) >= 4:
            s.syncs.pop(next(iter(s.syncs)))
        s.syncs[wall] = (now, bits)
        s.sync_at = s.probe_at = now
        self.stats.time_syncs += 1
        flags = CLOCK_UNTRUSTED if bits & TIME_UNTRUSTED else 0
        await self._send(s, TimeSync(wall, flags))

    async def _on_error(self, s: _Session, err: ErrorFrame) -> None:
        self.stats.mcu_errors[err.code] = self.stats.mcu_errors.get(err.code, 0) + 1
        if err.code == ErrorCode.HANDSHAKE_REQUIRED:
            await self._hello(s)
        elif err.code in (ErrorCode.DATA_LOST, ErrorCode.BAD_POSITION):
            if err.code == ErrorCode.DATA_LOST:
                self.stats.mcu_data_lost += err.arg
                self._log.warning(
                    "%s: the MCU discarded %d unacknowledged readings (%s)",
                    self.config.name,
                    err.arg,
                    err.message,
                )
            await self._hello(s)
        elif err.code == ErrorCode.UNSUPPORTED_VERSION:
            raise RemoteProtocolError(
                f"the MCU does not speak protocol version {PROTOCOL_VERSION} "
                f"(it speaks up to {err.arg})"
            )
        elif err.code == ErrorCode.BAD_FRAME:
            pass  # our frame was damaged on the way; ACKs repeat and RESENDs re-arm
        else:
            self._throttle.warning(
                f"mcu-error-{err.code}",
                "%s: MCU error %d (arg %d): %s",
                self.config.name,
                err.code,
                err.arg,
                err.message,
            )

    async def _resend(self, s: _Session) -> None:
        s.gap_at = asyncio.get_running_loop().time()
        self.stats.resends += 1
        last = s.conn.last_delivered
        if last is None:
            await self._hello(s)  # the first reading of the session was lost: start over
        else:
            await self._send(s, Resend(*last))

    async def _send_ack(self, s: _Session, position: McuPosition) -> None:
        s.ack_sent = position
        s.ack_at = asyncio.get_running_loop().time()
        self.stats.acks_sent += 1
        await self._send(s, Ack(*position))

    def _commit(self, uid: int, position: McuPosition) -> None:
        current = self._committed.get(uid)
        if current is not None and position <= current:
            return
        self._committed[uid] = position
        self._watermarks.save(uid, position)
        self._wake.set()

    async def _ticker(self, s: _Session) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        tick = min(cfg.resend_timeout_ms, cfg.hello_timeout_ms, cfg.ack_repeat_ms) / 4000
        tick = min(max(tick, 0.01), 0.25)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            self._wake.clear()
            now = loop.time()
            conn = s.conn
            if now - s.heard > cfg.dead_after_ms / 1000:
                self._lost_reason = "silent" if s.port.still_present() else "port_lost"
                raise PortLostError(
                    f"{cfg.port.path}: no frame for {cfg.dead_after_ms} ms"
                    + ("" if s.port.still_present() else " and the device node is gone")
                )
            if not conn.ready:
                if now - s.hello_at > cfg.hello_timeout_ms / 1000:
                    await self._hello(s)
                continue
            uid = s.uid
            committed = self._committed.get(uid) if uid is not None else None
            if committed is not None and (
                committed != s.ack_sent or now - s.ack_at > cfg.ack_repeat_ms / 1000
            ):
                await self._send_ack(s, committed)
            if conn.in_gap and now - s.gap_at > cfg.resend_timeout_ms / 1000:
                await self._resend(s)
            quiet = now - s.heard > cfg.probe_after_ms / 1000
            if (quiet and now - s.probe_at > cfg.probe_after_ms / 1000) or (
                now - s.sync_at > cfg.time_sync_interval_ms / 1000
            ):
                await self._time_sync(s)
