"""The MQTT source: sensors on the gateway's broker, each message acknowledged only once its
readings are committed to the buffer.

    broker ─PUBLISH─▶ on_message ─(room?)─▶ map → sink.add ─┐   acker: await sink.committed()
                          │ no room                         └─queue─▶        PUBACK in order
                          └─▶ held (bounded; reading paused) ─▶ feeder: added as room frees

Invariants:
1. Nothing the broker holds for us is thrown away by us. QoS 1 subscriptions in a persistent
   session: MQTT 3.1.1 `clean_session = false`, MQTT 5 `clean_start = false` with a
   `session_expiry_s` (aiomqtt's default, clean start on the first connect of every process,
   would discard the queue on each restart), and a fixed client id. A QoS 2 publish reaches us
   as QoS 1 (paho sends PUBREC before the application sees a QoS 2 message: not ack-late-safe).
2. Ack after commit. paho's `manual_ack` holds back the PUBACK; aiomqtt 2.5 does not expose it
   (empicano/aiomqtt#345), so `agent.sources.mqtt.client.AckClient` is the one place that
   touches aiomqtt internals (for manual ack, the DUP flag, the session-present flag, and to
   pause and resume reading the socket, invariant 6). A message's readings
   are added to the sink in the read callback (or by the feeder, invariant 6); the acker takes
   everything handed over so far, awaits `sink.committed()`, then PUBACKs it in arrival order on
   the connection that delivered it. A delivery whose connection has gone is not acked: the
   broker sends it again.
3. Exactly once across redelivery and restarts (`agent.sources.mqtt.seen`): a redelivered
   message (DUP set, session present) whose packet id and topic+payload hash match one of the
   messages handed over (all unacknowledged ones and the last `2 * receive_maximum` acked) is
   acked without adding its readings again. The record is the source's state in the agent's
   buffer (`Ingest.track_state`): captured as the ingest takes each group and written in that
   group's transaction, so after a kill -9 or a power cut the record lists exactly the
   messages whose readings the buffer holds. A broker that starts a new session makes the
   record void: reading pauses until the emptied record is committed (otherwise a restart in
   between could take a new message for the redelivery of an old one with the same id and
   bytes).
4. Bad input never stops the source: every message is mapped by `Mapper` (pure, never raises),
   problems are counted by reason in `stats.problems` and logged at most once a minute per
   reason; the message is acked after the commit like any other.
5. Connection faults are retried forever with capped, jittered backoff (`reconnect_initial_ms`
   doubling to `reconnect_max_s`, times 0.5-1.0); only configuration faults (an unsafe password
   file) raise. A broker that comes back without our session (no persistence, session expired)
   is logged as a warning and counted in `stats.session_lost`: what it held is gone.
6. Backpressure through the broker, never by closing the connection. When the agent's ingest
   has no room for a message's readings (the buffer commits slower than the broker delivers),
   or it already holds `PENDING_MAX_READINGS` of them (which keeps commit groups and memory
   small), the message waits, in order, in a bounded queue (`HOLD_MAX` messages; everything after it
   queues behind it, so PUBACKs stay in arrival order); once the queue is full the source stops
   reading the socket, so TCP and the broker's in-flight window hold the rest. The feeder adds
   queued messages as commits free room and reading resumes below half the bound
   (`stats.overflows` counts pauses). A pause lasts until the next commit, normally within
   `flush_interval_ms`; paho's keepalive runs on meanwhile (PINGREQ after `keepalive_s` without
   traffic), and if the buffer stalls for longer than one to two `keepalive_s` the unread PINGRESP
   makes paho close the connection: the broker keeps the messages and sends them again after
   the reconnect, recognised by invariant 3.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.errors import ConfigError
from agent.sources import HostStamper, Sink, Stamper
from agent.sources.gaps import Gaps
from agent.sources.mqtt.client import AckClient, TlsContext
from agent.sources.mqtt.config import (
    MqttSourceConfig,
    default_client_id,
    mqtt_config_problems,
    parse_broker_url,
    read_secret_file,
)
from agent.sources.mqtt.mapping import CompiledRule, Mapper, compile_rule
from agent.sources.mqtt.presets import PRESETS
from agent.sources.mqtt.seen import Entry, Seen, fingerprint
from firmware_bridge.backoff import Backoff
from wire.models import SeriesKey

log = logging.getLogger(__name__)

QUIET_REASONS = frozenset({"no_values", "retained"})  # counted, not logged
# Logged at INFO: a topic the subscription takes in but no rule wants is usually by design
# (a Shelly's status/sys under status/+ when the rule takes status/switch:{channel}).
INFO_REASONS = frozenset({"unknown_topic"})
# Messages read but not yet handed over (the ingest had no room) before reading pauses
# (invariant 6): bounds the source's memory; TCP and the broker hold the rest.
HOLD_MAX = 256
# Readings waiting in the ingest for the next commit that this source adds at most: a commit
# group (and the agent's memory) stays small however fast the broker drains a backlog.
PENDING_MAX_READINGS = 8_192


@runtime_checkable
class StateSink(Protocol):
    """A sink that commits a source's state with its readings (`agent.ingest.SourceSink`); a
    sink without it (a test's fake) keeps the redelivery record in memory only."""

    def track_state(self, capture: Callable[[], bytes | None]) -> bytes | None: ...
    def state_changed(self) -> None: ...


# -- the source -------------------------------------------------------------------------------


@dataclass(slots=True)
class MqttStats:
    """Running totals since start; `problems` by reason (see mapping.REASONS)."""

    messages: int = 0
    readings: int = 0
    acked: int = 0
    duplicates: int = 0
    connects: int = 0
    disconnects: int = 0
    session_lost: int = 0
    overflows: int = 0  # pauses in reading: the ingest had no room (invariant 6)
    broker_dropped: int = 0  # the broker's own count (all its clients), as last reported
    problems: collections.Counter[str] = field(default_factory=collections.Counter)


class MqttSource:
    def __init__(
        self,
        config: MqttSourceConfig,
        *,
        state_dir: Path | None = None,
        clock: Stamper | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        problems = mqtt_config_problems(config, f"sources.{config.name}")
        if problems:
            raise ConfigError(problems)
        self.config = config
        self.name = config.name
        self.address = parse_broker_url(config.url)
        self.client_id = config.client_id or default_client_id(config.name)
        rules: list[CompiledRule] = [compile_rule(r, PRESETS) for r in config.rules]
        self.mapper = Mapper(
            rules,
            max_payload_bytes=config.max_payload_bytes,
            max_readings_per_message=config.max_readings_per_message,
        )
        self._needs_time = any(r.ts_steps is not None for r in rules)
        self._clock: Stamper = clock or HostStamper()
        self._sleep = sleep
        self._rng = rng
        self.stats = MqttStats()
        self.tap: Callable[[str], None] | None = None  # `edge-agent probe`: raw data
        self._problems = _ProblemLog(self.name, monotonic)
        identity = f"{config.url}\0{self.client_id}".encode()
        # the redelivery record of version 0.1.0, read once (seen.py)
        self._legacy = None if state_dir is None else state_dir / f"{config.name}.mqtt-seen"
        keep = max(2 * config.receive_maximum, 256)
        self._seen = Seen(identity, keep, enabled=config.dedupe == "packet_id")
        self._series: dict[SeriesKey, int] = {}
        self.gaps = Gaps(self.name, clock=self._clock, logger=log, monotonic=monotonic)
        self._pending: list[tuple[_Connection, int, Entry | None]] = []
        self._held: collections.deque[_Held] = collections.deque()
        self._wake_feeder = asyncio.Event()
        self._paused: list[_Connection] = []
        self._record_void = False  # a new session emptied the record: commit before reading
        self._state_sink: StateSink | None = None
        self._capacity = 0  # the most room the sink ever had: a message beyond it never fits
        self._generation = 0
        self._pending_ready = asyncio.Event()
        self._had_session = False
        self._drops_first = True
        self._drops_refused = False
        self._lost_at: float | None = None
        self._monotonic = monotonic
        self.connected = asyncio.Event()  # set while subscribed (tests, status)

    @property
    def held(self) -> int:
        """Messages read but not yet handed over (at most about `HOLD_MAX`)."""
        return len(self._held)

    async def run(self, sink: Sink) -> None:
        legacy = None
        if isinstance(sink, StateSink):
            self._state_sink = sink
            self._had_session = self._seen.load(sink.track_state(self._seen.capture))
        if self._legacy is not None and self._legacy.exists() and self._seen.enabled:
            legacy = self._legacy
            if not self._had_session:
                self._had_session = self._seen.load_file(legacy)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._acker(sink, legacy), name=f"source:{self.name}:acker")
                tg.create_task(self._feeder(sink), name=f"source:{self.name}:feeder")
                tg.create_task(self._connections(sink), name=f"source:{self.name}:connection")
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # one task failed: raise its error, not a group
                raise group.exceptions[0] from None
            raise

    # -- connection ---------------------------------------------------------------------------

    async def _connections(self, sink: Sink) -> None:
        backoff = Backoff(
            self.config.reconnect_initial_ms / 1000, self.config.reconnect_max_s, self._rng
        )
        while True:
            self._generation += 1
            conn = _Connection(gen=self._generation)
            try:
                await self._session(sink, conn, backoff)
                reason = "the connection ended"  # pragma: no cover (messages never ends cleanly)
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                reason = _describe(exc)
            finally:
                conn.alive = False
                self.connected.clear()
                if conn.client is not None:
                    conn.client.retrieve_disconnect_error()
            if conn.subscribed:
                self.stats.disconnects += 1
                self._lost_at = self._monotonic()
                log.warning("%s: lost the broker at %s: %s", self.name, self.config.url, reason)
                self.gaps.heard()  # measured from the loss, as the "back after" line is
                self.gaps.down(sink, "broker_lost", reason, log=False)
            elif backoff.attempts % 10 == 0:  # the first failure, then every tenth
                log.warning(
                    "%s: cannot reach the broker at %s (attempt %d): %s",
                    self.name,
                    self.config.url,
                    backoff.attempts + 1,
                    reason,
                )
            await self._sleep(backoff.next_delay())

    async def _session(self, sink: Sink, conn: _Connection, backoff: Backoff) -> None:
        cfg = self.config
        client = self._make_client(
            lambda m: self._on_message(sink, conn, m), lambda p: self._on_session(conn, p)
        )
        conn.client = client
        # Alive from the start: redeliveries can be handled before __aenter__ returns.
        conn.alive = True
        timeout = cfg.timeout_s
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(timeout * 2 + 5):  # backstop: aiomqtt times out first
                    await stack.enter_async_context(client)
            except BaseException:
                client.close_failed_tls()
                raise
            subscribing = asyncio.create_task(
                self._subscribe(client), name=f"source:{self.name}:subscribe"
            )
            try:
                if client.session_present:
                    # The subscriptions live in the session and messages flow already; the
                    # SUBACK can queue behind a large backlog for many seconds (Mosquitto 2.0),
                    # so it is checked when it comes instead of holding the connection up.
                    subscribing.add_done_callback(self._subscribed_late)
                else:
                    async with asyncio.timeout(timeout):
                        await asyncio.shield(subscribing)
                conn.subscribed = True
                self.connected.set()
                backoff.reset()
                away = ""
                if self._lost_at is not None:
                    away = f", back after {self._monotonic() - self._lost_at:.1f} s"
                    self._lost_at = None
                    self.gaps.up(sink, log=False)
                log.info(
                    "%s: subscribed to %s at %s as %r (session %s%s)",
                    self.name,
                    ", ".join(self.mapper.filters),
                    cfg.url,
                    self.client_id,
                    "resumed" if client.session_present else "new",
                    away,
                )
                # Messages never reach aiomqtt's queue (see AckClient): this waits for the end.
                async for _ in client.messages:  # pragma: no cover
                    pass
            finally:
                subscribing.cancel()
                await asyncio.gather(subscribing, return_exceptions=True)

    async def _subscribe(self, client: AckClient) -> None:
        """Subscribe (the data filters at QoS 1, the broker's drop count at QoS 0) and check
        what was granted; MqttError if a data filter was refused."""
        subscriptions = self._subscriptions()
        granted = await client.subscribe(subscriptions, timeout=math.inf)
        codes = [_code(c) for c in granted]
        for (topic, _opts), code in zip(subscriptions, codes, strict=False):
            if topic == self.config.broker_drops_topic:
                if code >= 0x80 and not self._drops_refused:
                    self._drops_refused = True
                    log.info("%s: the broker does not let us read %r", self.name, topic)
            elif code >= 0x80:
                raise aiomqtt.MqttError(f"the broker refused the subscription to {topic!r}")
            elif code == 0:
                log.warning("%s: only QoS 0 granted for %r: messages can be lost", self.name, topic)

    def _subscribed_late(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s: re-subscribing in the resumed session failed: %s", self.name, exc)

    def _on_session(self, conn: _Connection, present: bool) -> None:  # noqa: FBT001
        """Called from paho's CONNACK handling, before any message of this connection."""
        self.stats.connects += 1
        if not present:
            if self._had_session:
                self.stats.session_lost += 1
                log.warning(
                    "%s: the broker has no session for %r: messages it queued for us while we "
                    "were away are lost (broker restarted without persistence, or the session "
                    "expired after %d s)",
                    self.name,
                    self.client_id,
                    self.config.session_expiry_s,
                )
            # Nothing can be redelivered in a new session; the emptied record must be durable
            # before a message of this session is read (invariant 3).
            if self._seen.clear() and self._state_sink is not None:
                self._state_sink.state_changed()
                self._record_void = True
                self._wake_feeder.set()
        if self._record_void:
            self._pause(conn, overload=False)
        self._had_session = True

    def _broker_drops(self, payload: bytes) -> None:
        try:
            value = int(payload)
        except ValueError:
            return
        seen, self.stats.broker_dropped = self.stats.broker_dropped, value
        if value > seen:
            since = "since it started" if self._drops_first else f"{value - seen} more"
            log.warning(
                "%s: the broker reports %d messages dropped at its queue limits (%s; all its "
                "clients): raise max_queued_messages in mosquitto.conf (docs/mqtt.md)",
                self.name,
                value,
                since,
            )
        self._drops_first = False

    def _subscriptions(self) -> list[tuple[str, Any]]:
        drops = self.config.broker_drops_topic
        if self.config.protocol == "5":
            # retainHandling 1: retained messages only when the subscription is new; the drop
            # count (retained by Mosquitto) on every subscribe, so we learn it at each connect.
            opts = SubscribeOptions(qos=1, retainHandling=1)
            out: list[tuple[str, Any]] = [(f, opts) for f in self.mapper.filters]
            return out + ([(drops, SubscribeOptions(qos=0))] if drops else [])
        return [(f, 1) for f in self.mapper.filters] + ([(drops, 0)] if drops else [])

    def _make_client(
        self,
        on_message: Callable[[paho.MQTTMessage], None],
        on_session: Callable[[bool], None],
    ) -> AckClient:
        cfg = self.config
        v5 = cfg.protocol == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = cfg.session_expiry_s
            properties.ReceiveMaximum = cfg.receive_maximum
        password = (
            read_secret_file(cfg.password_file, "password file") if cfg.password_file else None
        )
        return AckClient(
            self.address.host,
            self.address.port,
            on_message=on_message,
            on_session=on_session,
            identifier=self.client_id,
            username=cfg.username or None,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            # paho refuses clean_start for 3.1.1 unless it is left at its default
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=cfg.keepalive_s,
            timeout=cfg.timeout_s,
            tls_context=self._tls_context() if self.address.tls else None,
        )

    def _tls_context(self) -> TlsContext:
        cfg = self.config
        try:
            context = TlsContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
            if cfg.ca_file:
                context.load_verify_locations(cafile=cfg.ca_file)
            else:
                context.load_default_certs()
            if cfg.cert_file:
                read_secret_file(cfg.key_file, "client key file")  # refuse an unsafe key first
                context.load_cert_chain(cfg.cert_file, cfg.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"sources.{self.name}: cannot load TLS files: {exc}"]) from exc
        return context

    # -- messages (called by paho from the event loop's reader callback; must not raise) -------

    def _on_message(self, sink: Sink, conn: _Connection, message: paho.MQTTMessage) -> None:
        item = _Held(conn, message)
        if self._held or conn.paused or not self._take(sink, item):
            self._held.append(item)  # behind what waits already: handed over in order
            self._wake_feeder.set()
            if len(self._held) >= HOLD_MAX:
                self._pause(conn, overload=True)

    def _take(self, sink: Sink, item: _Held) -> bool:
        """Hand one message over (its readings to the sink, its PUBACK to the acker), or
        return False, having changed nothing but `item.prepared`, if the sink has no room."""
        message = item.message
        if item.prepared is None:
            try:
                item.prepared = self._prepare(item.conn, message)
            except Exception as exc:  # a bug must not drop the connection (paho would re-raise)
                item.prepared = _Prepared()
                self._internal_error(exc)
        prepared = item.prepared
        needed = len(prepared.readings)
        if needed:
            room = sink.room()
            self._capacity = max(self._capacity, room)
            limit = min(self._capacity, PENDING_MAX_READINGS)
            room -= self._capacity - limit
            if room < needed <= limit:  # a message that can never fit goes in now
                return False
        entry = prepared.known
        try:
            if prepared.known is None:
                entry = self._hand_over(sink, item.conn, message, prepared)
        except Exception as exc:
            self._internal_error(exc)
        if message.qos:
            self._pending.append((item.conn, message.mid, entry))
            self._pending_ready.set()
        return True

    def _internal_error(self, exc: Exception) -> None:
        self._problem("internal_error", "?", "see the traceback logged once")
        if self.stats.problems["internal_error"] == 1:
            log.error("%s: failed to handle a message", self.name, exc_info=exc)

    def _prepare(self, conn: _Connection, message: paho.MQTTMessage) -> _Prepared:
        """Recognise a redelivery, or map the message (nothing is handed over yet)."""
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.stats.messages += 1
            self._problem("bad_topic", "?", "topic is not UTF-8")
            return _Prepared()
        payload = message.payload
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        if not message.qos and topic == self.config.broker_drops_topic:
            self._broker_drops(payload)
            return _Prepared()
        self.stats.messages += 1
        if self.tap is not None:
            self.tap(f"{topic} {payload!r}")
        fp = 0
        if message.qos and self._seen.enabled:
            fp = fingerprint(topic, payload)
            if message.dup:
                known = self._seen.match(message.mid, fp)
                if known is not None:
                    self.stats.duplicates += 1
                    return _Prepared(known=known)
            else:
                self._seen.fresh(conn.gen)
        if message.retain and self.config.retained == "ignore":
            self._problem("retained", topic, "retained message ignored")
            return _Prepared(topic=topic)
        now_ms: int | None = None
        if self._needs_time:
            ts, flags = self._clock.now()
            now_ms = None if flags else ts
        mapped = self.mapper.map(topic, payload, now_ms=now_ms)
        return _Prepared(
            topic=topic,
            fp=fp,
            record=bool(message.qos),
            readings=mapped.readings,
            problems=mapped.problems,
        )

    def _hand_over(
        self, sink: Sink, conn: _Connection, message: paho.MQTTMessage, prepared: _Prepared
    ) -> Entry | None:
        """Add a mapped message's readings; the redelivery entry to mark when it is acked."""
        topic = prepared.topic
        for reason, detail in prepared.problems:
            self._problem(reason, topic, detail)
        for key, value, quality, ts_ms in prepared.readings:
            sid = self._series.get(key)
            if sid is None:
                if len(self._series) >= self.config.max_series:
                    self._problem("too_many_series", topic, f"cap of {self.config.max_series}")
                    continue
                sid = self._series[key] = sink.series_id(key)
            sink.add(sid, value, quality, ts_ms)
            self.stats.readings += 1
        return self._seen.add(message.mid, prepared.fp, conn.gen) if prepared.record else None

    def _problem(self, reason: str, topic: str, detail: str) -> None:
        self.stats.problems[reason] += 1
        if reason not in QUIET_REASONS:
            self._problems.report(reason, topic, detail)

    # -- acknowledgement ----------------------------------------------------------------------

    async def _acker(self, sink: Sink, legacy: Path | None) -> None:
        if legacy is not None:
            if self._state_sink is not None:  # the record is in the buffer: the file can go
                self._state_sink.state_changed()
                await sink.committed()
            with contextlib.suppress(OSError):
                await asyncio.to_thread(legacy.unlink)
        while True:
            await self._pending_ready.wait()
            group, self._pending = self._pending, []
            self._pending_ready.clear()
            await sink.committed()
            for conn, mid, entry in group:
                if conn.alive and conn.client is not None:
                    conn.client.ack(mid)
                    self.stats.acked += 1
                    if entry is not None:
                        self._seen.acked(mid, entry)

    # -- backpressure (invariant 6) -----------------------------------------------------------

    async def _feeder(self, sink: Sink) -> None:
        """Hands held messages over as commits free room; resumes reading."""
        while True:
            await self._wake_feeder.wait()
            self._wake_feeder.clear()
            if self._record_void:
                await sink.committed()  # the emptied record, with what came before it
                self._record_void = False
            starved = False
            while self._held:
                item = self._held[0]
                if not item.conn.alive:  # never acked: the broker sends it again
                    self._held.popleft()
                    continue
                if not self._take(sink, item):
                    if starved:  # committed, still no room: another source fills it; poll
                        await asyncio.sleep(0.02)
                    await sink.committed()  # a commit empties the ingest
                    starved = True
                    continue
                starved = False
                self._held.popleft()
                if len(self._held) <= HOLD_MAX // 2:
                    self._resume()
            if not self._record_void:
                self._resume()

    def _pause(self, conn: _Connection, *, overload: bool) -> None:
        if conn.paused or not conn.alive or conn.client is None:
            return
        conn.paused = True
        conn.client.pause_reading()
        self._paused.append(conn)
        if overload:
            self.stats.overflows += 1
            if self.stats.overflows == 1:
                log.info(
                    "%s: the agent's buffer is not keeping up: reading from the broker pauses "
                    "until commits free room (counted in overflows; the broker holds the rest)",
                    self.name,
                )

    def _resume(self) -> None:
        paused, self._paused = self._paused, []
        for conn in paused:
            conn.paused = False
            if conn.alive and conn.client is not None:
                conn.client.resume_reading()


@dataclass(slots=True, eq=False)
class _Connection:
    gen: int
    client: AckClient | None = None
    alive: bool = False
    subscribed: bool = False
    paused: bool = False  # its socket is not read (invariant 6)


@dataclass(slots=True, eq=False)
class _Prepared:
    """A message recognised or mapped, not yet handed over."""

    known: Entry | None = None  # a redelivery of this entry: acked, nothing added
    topic: str = "?"
    fp: int = 0
    record: bool = False  # QoS 1: recorded in `Seen` when handed over
    readings: list[tuple[SeriesKey, float, int, int | None]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Held:
    conn: _Connection
    message: paho.MQTTMessage
    prepared: _Prepared | None = None


def _code(code: Any) -> int:
    return int(code.value) if isinstance(code, ReasonCode) else int(code)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, aiomqtt.MqttError) and cause is not None and str(cause):
        text = f"{text} ({cause})"
    return text


class _ProblemLog:
    """One line per reason at most once a minute, with the count of what it held back."""

    def __init__(self, name: str, monotonic: Callable[[], float], interval_s: float = 60.0) -> None:
        self.name = name
        self.monotonic = monotonic
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: collections.Counter[str] = collections.Counter()

    def report(self, reason: str, topic: str, detail: str) -> None:
        now = self.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._held[reason] += 1
            return
        held = self._held.pop(reason, 0)
        self._last[reason] = now
        more = f" (and {held} more since the last report)" if held else ""
        level = logging.INFO if reason in INFO_REASONS else logging.WARNING
        log.log(level, "%s: %s on %r: %s%s", self.name, reason, topic[:200], detail[:200], more)
