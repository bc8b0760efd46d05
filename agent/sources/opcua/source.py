"""The OPC UA source's run loop: one client session to one server, its variables into the sink.

With `connect`, `recovery` and `requests`, the only modules that import asyncua; its exceptions
end here.

Invariants:
1. Every value the server reports becomes one reading, in the order reported: a monitored
   item's notification (mode `subscribe`, the default: sampling interval, queue size and an
   absolute deadband per node) or a read (mode `poll`). Its quality is the status code's
   severity (`status.quality`); every non-good condition is counted by code in
   `stats.status`. A BAD value is sent as 0.0 with quality BAD, never as NaN.
2. Time: the server's source timestamp is used when the agent's clock is trusted and the two
   agree within `max_source_skew_ms`; otherwise the agent stamps the reading (flagging untrusted
   time as every source does) and `stats.source_time_replaced` counts it.
3. Connection faults are retried forever with capped, jittered backoff (`reconnect_initial_ms`
   doubling to `reconnect_max_s`). A lost link in mode `subscribe` is first recovered
   (invariant 7); otherwise each attempt is a new session on which every monitored item is
   created again with the same node set and parameters (sampling interval, queue size,
   deadband: `requests.monitored_item`). Only configuration faults (an unsafe key file) raise.
4. Gaps follow the one model (`agent.sources.gaps`): the first failure (a lost session, or a
   first connect that fails) is one `source_down` event (reason `link_lost`) and one WARNING
   line, the next session made is one `source_up` and one INFO line; failed attempts in between
   are throttled (`LogThrottle`). Every node with a series gets a BAD reading stamped at the
   loss, unless the session was recovered with no notification lost (invariant 7): it is
   written when that is known to have failed (a new session made, or a message missing).
   In mode `poll`, one more per missed poll interval until a session is back. A node the
   server does not have (yet, or any more) gets one BAD reading and one log
   line when found missing, is counted in `stats.nodes_missing`, and is looked for again every
   `resolve_retry_s`; the other nodes read on.
5. No value is stored twice: a monitored item's first notification after it is created again
   is the server replaying the node's current value; when its source timestamp equals that of
   the last value delivered for the node, it was delivered already and is left out
   (`stats.replays_skipped`). In mode `poll` a read is a reading unless it carries the same
   source timestamp as the node's last one: that is the same sample read again (two polls
   between two changes) and is left out (`stats.repeats_skipped`); a server that sends no
   source timestamp gets a reading per read.
6. Security: the server's certificate is compared with `trusted_server_certs` before the secure
   channel is opened; a certificate not in the list is refused (`stats.certificate_rejected`).
7. Session recovery (mode `subscribe`, `on_link_lost = "recover_session"`): after a lost link
   the same session is activated on a new connection (`recovery.reactivate`) and its
   subscription bound to it with the server's held notifications republished
   (`recovery.restore`), retried with the backoff until the session's timeout has passed since
   the loss. The server then delivers what it queued meanwhile (up to each item's
   `queue_size`), with source timestamps, and no item is created again. When the server no
   longer has the session or its subscription, the session timeout has passed, or a
   notification was dropped in this process (the consumer fell behind), a new session is made
   as in invariant 3. A notification message missing
   after recovery (a sequence-number gap) is counted (`stats.notifications_lost`) and marks
   every node BAD at the loss.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError

from agent.errors import ConfigError
from agent.sources import HostStamper, Sink, Stamper
from agent.sources.gaps import Gaps, GapStats
from agent.sources.mqtt.config import read_secret_file
from agent.sources.opcua import status
from agent.sources.opcua.certs import (
    ClientIdentity,
    default_application_uri,
    ensure_client_identity,
    fingerprint,
    load_certificate_der,
)
from agent.sources.opcua.config import (
    OpcuaSourceConfig,
    opcua_config_problems,
    tags,
)
from agent.sources.opcua.connect import (
    FAULTS,
    Credentials,
    RefusedError,
    close_session,
    describe,
    open_session,
)
from agent.sources.opcua.recovery import (
    SessionGoneError,
    TrackedSubscription,
    create_subscription,
    recover,
)
from agent.sources.opcua.requests import engineering_units, monitored_item
from agent.sources.throttle import LogThrottle
from firmware_bridge.backoff import Backoff
from wire.models import Quality, SeriesKey

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


@dataclass(slots=True)
class OpcuaStats:
    """Running totals since start; `status` counts non-good status codes by condition."""

    connects: int = 0
    connect_failures: int = 0
    certificate_rejected: int = 0
    links_lost: int = 0
    readings: int = 0
    bad_readings: int = 0
    uncertain_readings: int = 0
    non_numeric: int = 0
    non_finite: int = 0
    source_time_replaced: int = 0
    queue_overflows: int = 0  # values the server discarded from a full monitored-item queue
    nodes_missing: int = 0  # nodes the server did not have at the last look
    replays_skipped: int = 0  # a re-created item's first value, already delivered (invariant 5)
    repeats_skipped: int = 0  # mode poll: the same sample read again (invariant 5)
    sessions_recovered: int = 0  # lost links after which the same session went on (invariant 7)
    republished: int = 0  # notification messages the server sent again after a recovery
    notifications_lost: int = 0  # notification messages missing after a recovery
    outages: GapStats = field(default_factory=GapStats)  # source_down / source_up events
    status: collections.Counter[str] = field(default_factory=collections.Counter)


class _LinkLostError(Exception):
    """Internal: the link is lost; recover the session or make a new one."""


@dataclass(slots=True)
class _Live:
    """The subscription of the current session and what it monitors, kept across a recovery."""

    sub: TrackedSubscription
    nodes: dict[int, Node]
    items: dict[int, int]  # monitored item id by node index


class OpcuaSource:
    """Reads one server. `run(sink)` until cancelled; ConfigError is the only raise."""

    def __init__(
        self,
        config: OpcuaSourceConfig,
        *,
        clock: Stamper | None = None,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        problems = opcua_config_problems(config, f"sources.{config.name}")
        if problems:
            raise ConfigError(problems)
        self.config = config
        self.name = config.name
        self.stats = OpcuaStats()
        self.tap: Callable[[str], None] | None = None  # `edge-agent probe`: values as received
        self._clock: Stamper = clock or HostStamper()
        self._rng = rng
        self._log = logger or logging.getLogger(__name__)
        self._throttle = LogThrottle(self._log)
        self.gaps = Gaps(self.name, clock=self._clock, logger=self._log, stats=self.stats.outages)
        self._app_uri = config.application_uri or default_application_uri(config.name)
        self._keys: list[SeriesKey | None] = [None] * len(config.nodes)  # unit learnt once
        self._ids: list[int] = [-1] * len(config.nodes)
        self._missing: set[int] = set()
        # invariant 5: the source timestamp of the last value delivered per node, and the nodes
        # whose next notification is the replay of a monitored item created again
        self._last_source: list[dt.datetime | None] = [None] * len(config.nodes)
        self._replay: set[int] = set()
        self._identity: ClientIdentity | None = None
        self._trusted: frozenset[bytes] = frozenset()
        self._password: str | None = None
        self._live: _Live | None = None

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        cfg = self.config
        self._load_secrets()
        backoff = Backoff(cfg.reconnect_initial_ms / 1000, cfg.reconnect_max_s, self._rng)
        filler: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    client, lost = await self._connect()
                except RefusedError as exc:
                    self.stats.connect_failures += 1
                    detail = f"cannot connect to {cfg.url}: {exc}"
                    if not self.gaps.down(sink, "link_lost", detail):
                        self._throttle.warning("connect", "%s: %s", self.name, detail)
                    if filler is None and cfg.mode == "poll":
                        filler = self._start_filler(sink)
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                self.stats.connects += 1
                if filler is not None:
                    await _cancel(filler)
                    filler = None
                self.gaps.up(sink)
                try:
                    while True:  # one session, recovered after each loss while it can be
                        reason = await self._session(client, lost, sink)
                        self.stats.links_lost += 1
                        self.gaps.down(sink, "link_lost", f"{cfg.url}: {reason}")
                        loss = self._clock.now()
                        if not await self._recover(client, lost, sink, backoff, loss):
                            self._mark_all_bad(sink, loss)
                            break
                finally:
                    self._live = None
                    await self._close(client)
                if cfg.mode == "poll":
                    filler = self._start_filler(sink)
                await asyncio.sleep(backoff.next_delay())
        finally:
            if filler is not None:
                await _cancel(filler)

    async def _recover(
        self,
        client: Client,
        lost: asyncio.Event,
        sink: Sink,
        backoff: Backoff,
        loss: tuple[int, int],
    ) -> bool:
        """After a lost link, the same session on a new connection (invariant 7): True when
        it is back with its subscription, False when a new session is needed."""
        live = self._live
        if live is None or self.config.on_link_lost != "recover_session" or live.sub.overflowed:
            return False  # polling, no subscription yet, or a value dropped here: start afresh

        def refused(exc: Exception) -> None:
            self.stats.connect_failures += 1
            self._throttle.warning(
                "connect", "%s: cannot reach %s again: %s", self.name, self.config.url, exc
            )

        try:
            done = await recover(
                client, live.sub, self.config, self._password, backoff, lost, refused
            )
        except SessionGoneError as exc:
            self._log.info("%s: %s; making a new one", self.name, exc)
            return False
        self.stats.connects += 1
        self.stats.sessions_recovered += 1
        self.stats.republished += done.republished
        self.gaps.up(sink)
        self._log.info(
            "%s: session recovered after %.1f s: %d notification message(s) republished, %d lost",
            self.name,
            done.seconds,
            done.republished,
            done.lost,
        )
        if done.lost:
            self.stats.notifications_lost += done.lost
            self._mark_all_bad(sink, loss)
        return True

    def _start_filler(self, sink: Sink) -> asyncio.Task[None]:
        return asyncio.create_task(self._fill_gap(sink), name=f"opcua-{self.name}-gap")

    async def _fill_gap(self, sink: Sink) -> None:
        """Mode `poll`, while no session: one BAD reading per node per missed poll (invariant
        4), as the polled serial sources write them."""
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval_ms / 1000
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._mark_all_bad(sink)
            due = max(due + interval, loop.time())

    def _load_secrets(self) -> None:
        cfg = self.config
        if cfg.security_policy != "None" and self._identity is None:
            self._identity = ensure_client_identity(cfg.cert_file, cfg.key_file, self._app_uri)
            if self._identity.created:
                self._log.warning(
                    "%s: made a client certificate %s (SHA-256 %s); add it to the server's "
                    "trusted certificates",
                    self.name,
                    cfg.cert_file,
                    fingerprint(self._identity.certificate_der),
                )
            self._trusted = frozenset(load_certificate_der(p) for p in cfg.trusted_server_certs)
        if cfg.password_file and self._password is None:
            self._password = read_secret_file(cfg.password_file, "OPC UA password file")

    async def _connect(self) -> tuple[Client, asyncio.Event]:
        def rejected() -> None:
            self.stats.certificate_rejected += 1

        creds = Credentials(self._app_uri, self._identity, self._trusted, self._password)
        return await open_session(self.config, creds, on_rejected=rejected)

    async def _close(self, client: Client) -> None:
        await close_session(client, self.config.timeout_s)

    async def _session(self, client: Client, lost: asyncio.Event, sink: Sink) -> str:
        """Read until the link is lost; the reason it was lost."""
        work = asyncio.create_task(self._work(client, sink), name=f"opcua-{self.name}-read")
        watch = asyncio.create_task(lost.wait(), name=f"opcua-{self.name}-watch")
        try:
            done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, watch):
                task.cancel()
            await asyncio.gather(work, watch, return_exceptions=True)
        if work in done and not work.cancelled():
            exc = work.exception()
            if isinstance(exc, _LinkLostError):
                return str(exc)
            if isinstance(exc, FAULTS):
                return describe(exc)
            if exc is not None:
                raise exc
        return "the server stopped answering"

    async def _work(self, client: Client, sink: Sink) -> None:
        if self._live is not None:  # the session was recovered: read on
            await self._consume(client, self._live, sink)
            return
        nodes = await self._resolve(client, range(len(self.config.nodes)), sink)
        if self.config.mode == "poll":
            await self._poll(client, nodes, sink)
        else:
            await self._subscribe(client, nodes, sink)

    # -- nodes ------------------------------------------------------------------------------

    async def _resolve(self, client: Client, indices: Iterable[int], sink: Sink) -> dict[int, Node]:
        """The nodes of `indices` the server has, their series ids set; BAD for the others."""
        found: dict[int, Node] = {}
        paths: list[int] = []
        for i in indices:
            spec = self.config.nodes[i]
            if spec.node_id:
                found[i] = client.get_node(spec.node_id)
            else:
                paths.append(i)
        if paths:
            objects = ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder))
            results = await client.translate_browsepaths(
                objects, ["/" + self.config.nodes[i].browse_path for i in paths]
            )
            for i, result in zip(paths, results, strict=True):
                if result.StatusCode.is_good() and result.Targets:
                    found[i] = client.get_node(result.Targets[0].TargetId)
                else:
                    self._node_missing(i, result.StatusCode.value, sink)
        new = [i for i in sorted(found) if self._keys[i] is None]
        units = await engineering_units(
            client, {i: found[i] for i in new if not self.config.nodes[i].unit}
        )
        for i in new:
            spec = self.config.nodes[i]
            key = SeriesKey(spec.metric, spec.unit or units.get(i, ""), *tags(self.config, spec))
            self._keys[i] = key
            self._ids[i] = sink.series_id(key)
        return found

    def _node_missing(self, i: int, code: int, sink: Sink) -> None:
        first = i not in self._missing
        self._missing.add(i)
        self.stats.nodes_missing = len(self._missing)
        if first:
            self._throttle.warning(
                f"missing-{i}",
                "%s: the server has no node %s (%s); looked for again every %g s",
                self.name,
                self.config.nodes[i].where(),
                status.counter_key(code),
                self.config.resolve_retry_s,
            )
            if self._ids[i] >= 0:
                self._add_bad(sink, i, code)
            else:
                self.stats.status[status.counter_key(code)] += 1

    def _node_found(self, i: int) -> None:
        self._missing.discard(i)
        self.stats.nodes_missing = len(self._missing)

    # -- subscription -----------------------------------------------------------------------

    async def _subscribe(self, client: Client, nodes: dict[int, Node], sink: Sink) -> None:
        sub = await create_subscription(client, self.config, self.config.max_queued_notifications)
        live = _Live(sub, nodes, await self._monitor(sub, nodes, sink))
        self._live = live
        await self._consume(client, live, sink)

    async def _consume(self, client: Client, live: _Live, sink: Sink) -> None:
        audit = asyncio.create_task(
            self._audit(client, live, sink), name=f"opcua-{self.name}-audit"
        )
        try:
            async for event in live.sub:
                if isinstance(event, DataChangeEvent):
                    i = event.data.monitored_item.ClientHandle - 1
                    dv = event.data.monitored_item.Value
                    if i in self._replay:
                        self._replay.discard(i)
                        if dv.SourceTimestamp is not None and (
                            dv.SourceTimestamp == self._last_source[i]
                        ):
                            self.stats.replays_skipped += 1
                            continue
                    self._on_value(sink, i, dv)
                elif isinstance(event, StatusChangeEvent):
                    code = event.notification.Status.value
                    if status.quality(code) is Quality.BAD:
                        raise _LinkLostError(f"subscription status {status.counter_key(code)}")
        finally:
            audit.cancel()
            await asyncio.gather(audit, return_exceptions=True)
        raise _LinkLostError("the subscription ended")

    async def _monitor(self, sub: Any, nodes: dict[int, Node], sink: Sink) -> dict[int, int]:
        """Monitored items for `nodes`: their ids by node index (the missing ones left out)."""
        order = sorted(nodes)
        requests = [monitored_item(self.config, i, nodes[i]) for i in order]
        if not requests:
            return {}
        results = await sub.create_monitored_items(requests)
        items: dict[int, int] = {}
        for i, result in zip(order, results, strict=True):
            if isinstance(result, ua.StatusCode):
                self._node_missing(i, result.value, sink)
            else:
                self._node_found(i)
                items[i] = result
                if self._last_source[i] is not None:
                    self._replay.add(i)  # its first notification may repeat the last value
        return items

    async def _audit(self, client: Client, live: _Live, sink: Sink) -> None:
        """Every `resolve_retry_s`: drop the items of nodes that disappeared (a server reports
        nothing on a monitored item whose node was deleted) and monitor those that came back."""
        sub, nodes, items = live.sub, live.nodes, live.items
        while True:
            await asyncio.sleep(self.config.resolve_retry_s)
            order = sorted(items)
            if order:
                found = await client.read_attributes(
                    [nodes[i] for i in order], AttributeIds.NodeClass
                )
                gone = []
                for i, value in zip(order, found, strict=True):
                    code = value.StatusCode.value if value.StatusCode is not None else 0
                    if status.condition(code) in status.NODE_MISSING:
                        self._node_missing(i, code, sink)
                        gone.append(items.pop(i))
                if gone:
                    with contextlib.suppress(UaError):
                        await sub.unsubscribe(gone)
            if self._missing:
                back = await self._resolve(client, sorted(self._missing), sink)
                nodes.update(back)
                items.update(await self._monitor(sub, back, sink))

    # -- polling ----------------------------------------------------------------------------

    async def _poll(self, client: Client, nodes: dict[int, Node], sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval_ms / 1000
        due = loop.time()
        next_resolve = loop.time() + self.config.resolve_retry_s
        while True:
            if self._missing and loop.time() >= next_resolve:
                nodes.update(await self._resolve(client, sorted(self._missing), sink))
                next_resolve = loop.time() + self.config.resolve_retry_s
            order = sorted(nodes)
            # no node found yet: nothing to read (a server may answer an empty Read with
            # BadNothingToDo; asyncua's does not, so no test here can show it)
            values = await client.read_attributes([nodes[i] for i in order]) if order else []
            for i, value in zip(order, values, strict=True):
                code = value.StatusCode.value if value.StatusCode is not None else 0
                if status.condition(code) in status.NODE_MISSING:
                    self._node_missing(i, code, sink)
                    continue
                self._node_found(i)
                if value.SourceTimestamp is not None and (
                    value.SourceTimestamp == self._last_source[i]
                ):
                    self.stats.repeats_skipped += 1  # read before, between two changes
                    self.gaps.heard()
                    continue
                self._on_value(sink, i, value)
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due, loop.time() - interval)  # a slow server: skip, do not burst

    # -- readings ---------------------------------------------------------------------------

    def _on_value(self, sink: Sink, i: int, dv: ua.DataValue) -> None:
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        if self.tap is not None:
            raw_value = dv.Value.Value if dv.Value is not None else None
            where = self.config.nodes[i].where()
            self.tap(f"{where}: {raw_value!r} status 0x{code:08X} at {dv.SourceTimestamp}")
        if status.condition(code) in status.NODE_MISSING:
            self._node_missing(i, code, sink)
            return
        quality = status.quality(code)
        if code:
            self.stats.status[status.counter_key(code)] += 1
            if status.overflowed(code):
                self.stats.queue_overflows += 1
        raw = dv.Value.Value if dv.Value is not None else None
        value = 0.0
        if quality is not Quality.BAD:
            if isinstance(raw, bool | int | float):
                value = float(raw)
            else:
                self.stats.non_numeric += 1
                self._throttle.warning(
                    f"type-{i}",
                    "%s: node %s has a %s value, not a number; sent as BAD",
                    self.name,
                    self.config.nodes[i].where(),
                    type(raw).__name__,
                )
                quality = Quality.BAD
            if not math.isfinite(value):
                self.stats.non_finite += 1
                value, quality = 0.0, Quality.BAD
        self._last_source[i] = dv.SourceTimestamp
        self.gaps.heard()
        ts, bits = self._stamp(dv.SourceTimestamp)
        if quality is Quality.BAD:
            self.stats.bad_readings += 1
        elif quality is Quality.UNCERTAIN:
            self.stats.uncertain_readings += 1
        self.stats.readings += 1
        sink.add(self._ids[i], value, quality | bits, ts)

    def _stamp(self, source: dt.datetime | None) -> tuple[int, int]:
        """(ts_ms, quality bits): the source timestamp when it can be trusted (invariant 2)."""
        now, bits = self._clock.now()
        if source is None or self.config.timestamps == "agent":
            return now, bits
        if source.tzinfo is None:
            source = source.replace(tzinfo=dt.UTC)
        ts = (source - _EPOCH) // _MS
        if bits or abs(ts - now) > self.config.max_source_skew_ms:
            self.stats.source_time_replaced += 1
            return now, bits
        return ts, 0

    def _add_bad(
        self, sink: Sink, i: int, code: int | None, at: tuple[int, int] | None = None
    ) -> None:
        now, bits = at or self._clock.now()
        if code is not None:
            self.stats.status[status.counter_key(code)] += 1
        self.stats.readings += 1
        self.stats.bad_readings += 1
        sink.add(self._ids[i], 0.0, Quality.BAD | bits, now)

    def _mark_all_bad(self, sink: Sink, at: tuple[int, int] | None = None) -> None:
        """A BAD reading for every node with a series, stamped `at` (ts_ms, bits) or now."""
        for i, sid in enumerate(self._ids):
            if sid >= 0:
                self._add_bad(sink, i, None, at)  # counted in links_lost


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
