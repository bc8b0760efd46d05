"""The running agent: one TaskGroup, named tasks, a clean stop on SIGTERM.

Tasks: `source:<name>` per source, `flusher` (group commits), `sync` (uploads), `clock` (NTP
state, status fields), `health` (the health report, `agent.health`). The metrics endpoint is
an asyncio server beside them. Any task that fails takes the group down with its error (systemd
restarts the agent); SIGTERM or SIGINT cancel the group, then the readings still in memory are
committed in one last group and the buffer is closed, so a stop loses nothing that was handed
over, and takes milliseconds.

Only this module and the CLI build real collaborators (clock, buffer file, HTTP client); tests
pass their own (`RuntimeDeps`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agent.applier import Applier
from agent.buffer import open_buffer
from agent.clock import (
    AgentClock,
    SyncCheck,
    SystemTime,
    TimeSource,
    make_sync_check,
    read_kernel_boot_id,
)
from agent.config import Config, parse_listen
from agent.errors import StoreError
from agent.health import (
    HealthStats,
    SourceState,
    SourceStates,
    WatchedSink,
    error_counts,
    report_loop,
)
from agent.ingest import Ingest
from agent.keyfile import DeviceKey
from agent.metrics import Metrics, serve, source_counters
from agent.pressure import BufferPressure
from agent.remote import Running
from agent.sources import Source
from agent.sources.registry import SourceContext, build_source
from agent.sync import Syncer, SyncSettings
from agent.uplink import Uplink, make_client
from agent.watermarks import BufferWatermarks
from agent.worker import BufferWorker
from wire.http import Backlog, HealthReport
from wire.version import release

log = logging.getLogger(__name__)


@dataclass
class RuntimeDeps:
    """What the runtime would otherwise build itself."""

    time_source: TimeSource = field(default_factory=SystemTime)
    sync_check: SyncCheck | None = None
    transport: httpx.AsyncBaseTransport | None = None
    sources: list[Source] | None = None
    stop: asyncio.Event | None = None
    handle_signals: bool = True


class _StopRequestedError(Exception):
    """Raised inside the TaskGroup to cancel every task."""


class Agent:
    """Holds the collaborators of one run; `run()` until stopped."""

    def __init__(
        self,
        config: Config,
        deps: RuntimeDeps | None = None,
        *,
        config_version: str = "unknown",
        running: Running | None = None,
    ) -> None:
        self.config = config if running is None else running.config
        self.deps = deps or RuntimeDeps()
        # `agent.remote.Running.version`: the file's hash, or v<n> for a pushed config
        self.config_version = config_version if running is None else running.version
        self.running = running
        self.applier: Applier | None = None
        self._source_tasks: dict[str, asyncio.Task[None]] = {}
        self.health_stats = HealthStats()
        self.pressure_failures = 0  # group commits that failed (disk full, I/O error)
        self.metrics = Metrics()
        self.oldest_ts_ms: int | None = None
        self.stop = self.deps.stop or asyncio.Event()

    async def run(self) -> None:
        # Signals first: a SIGTERM that arrives while the buffer opens or the uplink is built
        # must still end in a clean stop (exit 0), not in the default action.
        with self._signals():
            await self._run()

    async def _run(self) -> None:
        cfg = self.config
        device_key = DeviceKey(cfg.device.key_file)
        log.info("signing with device key %s", device_key.keyid)
        kernel_boot_id = read_kernel_boot_id(cfg.device.boot_id_file)
        buffer = open_buffer(
            cfg.buffer.path,
            max_bytes=int(cfg.buffer.max_mb * 1024 * 1024),
            kernel_boot_id=kernel_boot_id,
        )
        self.worker = BufferWorker(buffer)
        client: httpx.AsyncClient | None = None
        server: asyncio.Server | None = None
        try:
            if buffer.damage is not None:
                self.metrics.dropped["damaged"] += buffer.damage.readings_lost
            self._build(kernel_boot_id)
            # Counted before anything can fail, so a crash loop shows in `restarts`.
            starts = int(buffer.meta.get("agent_starts", 0)) + 1
            await self.worker.call(buffer.set_meta, agent_starts=starts)
            # Before any source runs: what is committed from here on was read under this config
            # (readings already buffered keep theirs, agent.buffer invariant 7).
            await self.worker.call(buffer.set_config_version, self.config_version)
            self.agent_version = release()
            self.started_ms = self.clock.now_ms()
            self.started_mono_ms = self.deps.time_source.mono_ms()
            client = make_client(
                ca_file=cfg.cloud.ca_file,
                trust_env=cfg.cloud.trust_env,
                timeout_s=cfg.cloud.timeout_s,
                transport=self.deps.transport,
            )
            uplink = Uplink(
                client,
                base_url=cfg.cloud.url,
                key=device_key.key,
                now_ms=self.clock.now_ms,
                mono_ms=self.deps.time_source.mono_ms,
                timeout_s=cfg.cloud.timeout_s,
            )
            self.uplink = uplink
            self.syncer = Syncer(
                self.worker,
                uplink,
                self.clock,
                self.metrics,
                _settings(cfg),
                wake=self.wake,
                device_key=device_key,
            )
            if self.running is not None and self.running.key is not None and not self._fixed:
                self.applier = Applier(
                    self.running,
                    fetch=uplink.fetch_config,
                    switch=self._switch,
                    problem=self._window_problem,
                    now_ms=self.clock.now_ms,
                    window_s=cfg.cloud.config_apply_window_s,
                )
            if cfg.metrics.listen:
                addr = parse_listen(cfg.metrics.listen)
                server = await serve(addr.host, addr.port, self.metrics, self._refresh_gauges)
                self.metrics_port = server.sockets[0].getsockname()[1]
            await self._run_tasks()
        finally:
            if server is not None:
                server.close()
            await self._final_flush()
            if client is not None:
                await client.aclose()
            self.worker.close()
            log.info("stopped")

    def _build(self, kernel_boot_id: str) -> None:
        cfg, deps, buffer = self.config, self.deps, self.worker.buffer
        sync_check = deps.sync_check or make_sync_check(
            cfg.clock.sync_check, flag_file=cfg.clock.timesyncd_flag_file
        )
        self.clock = AgentClock(
            deps.time_source,
            sync_check,
            kernel_boot_id=kernel_boot_id,
            floor_ms=buffer.clock_floor_ms(),
            next_epoch_id=buffer.next_epoch_id(),
        )
        # Built before the ingest: the final flush runs whenever the ingest exists, and uses it.
        self.pressure = BufferPressure(buffer.max_bytes)
        self.ingest = Ingest(
            self.clock,
            series=dict(buffer.series),
            last_values=buffer.last_values(),
            flush_max_readings=cfg.buffer.flush_max_readings,
            max_pending=cfg.buffer.flush_max_readings * 10,
            states=buffer.states,
        )
        self.wake = asyncio.Event()
        self.watermarks = BufferWatermarks(buffer.positions, self.ingest)
        self._context = context = SourceContext(
            clock=self.clock,
            watermarks=self.watermarks,
            state_dir=Path(self.config.buffer.path).parent,
        )
        self.sources = (
            deps.sources
            if deps.sources is not None
            else [build_source(s, context) for s in cfg.sources]
        )
        self.source_states = SourceStates([s.name for s in self.sources])

    async def _run_tasks(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._flusher(), name="flusher")
                tg.create_task(self.syncer.run(), name="sync")
                tg.create_task(self._clock_task(), name="clock")
                tg.create_task(
                    report_loop(
                        self._send_health,
                        self.source_states.changed,
                        interval_s=self.config.cloud.health_interval_s,
                        stats=self.health_stats,
                    ),
                    name="health",
                )
                self._tg = tg
                for source in self.sources:
                    self._start_source(source)
                await self.stop.wait()
                raise _StopRequestedError
        except* _StopRequestedError:
            pass

    @property
    def _fixed(self) -> bool:
        """Sources passed in by a test: not built from the config, so not switched by it."""
        return self.deps.sources is not None

    def _start_source(self, source: Source) -> None:
        sink = WatchedSink(self.ingest.for_source(source.name), source.name, self.source_states)
        self._source_tasks[source.name] = self._tg.create_task(
            source.run(sink), name=f"source:{source.name}"
        )

    async def _switch(self, new: Running) -> set[str]:
        """Run `new`: stop the sources whose config changed, commit what they handed over under
        the old version, then start the changed ones; the rest keeps running (agent.applier)."""
        old = {s.name: s for s in self.config.sources}
        fresh = {s.name: s for s in new.config.sources}
        changed = {n for n in old.keys() | fresh.keys() if old.get(n) != fresh.get(n)}
        for name in sorted(changed & self._source_tasks.keys()):
            task = self._source_tasks.pop(name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.source_states.sources.pop(name, None)
        await self._commit_group()
        await self.worker.call(self.worker.buffer.set_config_version, new.version)
        self.config, self.config_version = new.config, new.version
        self.sources = [s for s in self.sources if s.name not in changed]
        for name in sorted(changed & fresh.keys()):
            source = build_source(fresh[name], self._context)
            self.sources.append(source)
            self.source_states.sources[name] = SourceState(name)
            self._start_source(source)
        self.source_states.changed.set()  # report the new version soon
        return changed & fresh.keys()

    def _window_problem(self, restarted: set[str], since_ms: int) -> str | None:
        """What keeps a just-applied config from being kept, or None (agent.applier)."""
        for name in sorted(restarted):
            state = self.source_states.sources.get(name)
            whole = None if state is None else state.down.get("")
            if whole is not None:
                return f"source {name} down: {whole.reason}"
        last_ack = self.worker.buffer.meta.get("last_sync_ms")
        if last_ack is None or int(last_ack) < since_ms:
            return "no upload acknowledged"
        return None

    # -- tasks ----------------------------------------------------------------------------

    async def _flusher(self) -> None:
        interval = self.config.buffer.flush_interval_ms / 1000
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.ingest.full.wait()
            try:
                dropped = await self._commit_group()
                # Every turn, not only after a commit: acknowledgements free space too.
                used = await self.worker.call(self.worker.buffer.used_bytes)
                self.pressure.observe(used, dropped, time.monotonic())
            except StoreError as exc:
                # Disk full or I/O error: the group went back into memory (bounded) and is
                # retried next interval; readings beyond the bound are counted as dropped.
                self.pressure_failures += 1
                if not failing:
                    log.error("cannot commit readings: %s; retrying", exc)
                failing = True
            else:
                if failing:
                    log.info("commits work again")
                failing = False

    async def _commit_group(self) -> int:
        """Commit what the ingest holds; returns the readings and events dropped for it."""
        group = self.ingest.take()
        if group.is_empty():
            self.ingest.mark_committed(group)
            return 0
        started = time.perf_counter()
        buffer = self.worker.buffer
        try:
            # Shielded: the group has left the ingest, so a stop that cancels this task while
            # the commit still waits its turn on the buffer thread must not cancel the commit
            # with it (the readings would vanish uncounted). The final flush queues behind it.
            result = await asyncio.shield(
                self.worker.call(
                    buffer.commit,
                    group.rows,
                    new_series=group.new_series,
                    new_epochs=group.new_epochs,
                    references=group.references,
                    dropped_before=group.dropped,
                    events=group.events,
                    positions=group.positions,
                    rejected_before=group.rejected,
                    states=group.states,
                )
            )
        except StoreError:
            self.ingest.give_back(group)
            raise
        m = self.metrics
        m.commits += 1
        m.commit_seconds_total += time.perf_counter() - started
        m.readings_committed += result.committed
        m.events_committed += result.events
        m.dropped["buffer_full"] += result.dropped
        self.ingest.mark_committed(group)
        self.oldest_ts_ms = await self.worker.call(buffer.oldest_ts_ms)
        self.wake.set()
        return result.dropped

    async def _clock_task(self) -> None:
        buffer = self.worker.buffer
        seen: tuple[int, str] | None = None
        while True:
            self.clock.refresh()
            now = (int(self.clock.state), self.metrics.uplink_state)
            if seen is not None and now != seen:
                self.source_states.changed.set()  # a state change: report health soon
            seen = now
            await self.worker.call(
                buffer.set_meta,
                clock_state=int(self.clock.state),
                clock_offset_ms=int(round(self.clock.offset_ms, -2)),  # no write per jitter
            )
            await asyncio.sleep(self.config.clock.check_interval_s)

    async def _send_health(self) -> None:
        ack = await self.uplink.send_health(await self.health_report())
        desired = ack.desired_config_version
        if self.applier is not None and desired is not None and self.applier.wants(desired):
            self.applier.busy = True  # before the task runs: the next ack must not start another
            self._tg.create_task(self.applier.apply(desired), name="remote-config")

    async def health_report(self) -> HealthReport:
        """The gateway's health now (`wire.http.HealthReport`)."""
        buffer = self.worker.buffer
        used = await self.worker.call(buffer.used_bytes)
        meta = dict(buffer.meta)  # one copy: the buffer thread may be writing
        now = self.clock.now_ms()
        oldest = self.oldest_ts_ms
        counters = {
            s.name: source_counters(stats)
            for s in self.sources
            if (stats := getattr(s, "stats", None)) is not None
        }
        last_ack = meta.get("last_sync_ms")
        return HealthReport(
            device_id=self.config.device.id,
            reported_ms=now,
            agent_version=self.agent_version,
            config_version=self.config_version,
            started_ms=self.started_ms,
            uptime_s=round((self.deps.time_source.mono_ms() - self.started_mono_ms) / 1000, 1),
            restarts=max(0, int(meta.get("agent_starts", 1)) - 1),
            backlog=Backlog(
                readings=buffer.depth + self.ingest.pending,
                bytes=used,
                oldest_age_s=None if oldest is None else round(max(0, now - oldest) / 1000, 1),
            ),
            drops={
                name: int(meta.get(f"total_{key}", 0))
                for name, key in (
                    ("buffer_full", "dropped_buffer_full"),
                    ("damaged", "dropped_damaged"),
                    ("rejected_invalid", "rejected_invalid"),
                )
            },
            clock_state=int(self.clock.state),
            clock_offset_ms=int(round(self.clock.offset_ms)),
            uplink=self.metrics.uplink_state,
            last_ack_ms=None if last_ack is None else int(last_ack),
            sources=[
                state.view(error_counts(counters.get(name, {})))
                for name, state in self.source_states.sources.items()
            ],
            errors={
                "commit_failures": self.pressure_failures,
                "health_reports_failed": self.health_stats.failed,
            },
            config_result=None if self.applier is None else self.applier.result,
        )

    async def _final_flush(self) -> None:
        if not hasattr(self, "ingest"):  # failed before the ingest existed: nothing to flush
            return
        try:
            self.pressure.flush(await self._commit_group(), time.monotonic())
        except StoreError as exc:
            log.error("could not commit the last readings on stop: %s", exc)

    def _refresh_gauges(self) -> None:
        m = self.metrics
        m.readings_in = self.ingest.readings_in
        m.events_in = self.ingest.events_in
        m.backlog_readings = self.worker.buffer.depth + self.ingest.pending
        oldest = self.oldest_ts_ms
        m.backlog_age_seconds = (
            0.0 if oldest is None else max(0.0, (self.clock.now_ms() - oldest) / 1000)
        )
        # persisted totals (refused at the door or set aside at a cut), as `status` shows them
        meta = dict(self.worker.buffer.meta)  # one copy: the buffer thread may be writing
        prefix = "total_rejected_by_"
        m.rejected = {k[len(prefix) :]: int(v) for k, v in meta.items() if k.startswith(prefix)}
        m.dropped["rejected_invalid"] = int(meta.get("total_rejected_invalid", 0))
        m.clock_state = int(self.clock.state)
        m.clock_offset_ms = self.clock.offset_ms
        m.buffer_fill_ratio = self.pressure.fill
        last_ack = self.worker.buffer.meta.get("last_sync_ms")
        m.last_ack_age_seconds = (
            None if last_ack is None else max(0.0, (self.clock.now_ms() - int(last_ack)) / 1000)
        )
        m.sources = {
            s.name: source_counters(stats)
            for s in self.sources
            if (stats := getattr(s, "stats", None)) is not None
        }

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if self.deps.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop.set)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


def _settings(cfg: Config) -> SyncSettings:
    c = cfg.cloud
    return SyncSettings(
        device_id=cfg.device.id,
        # New on every start, as the contract asks; the kernel's boot id is kept apart (clock).
        boot_id=f"{uuid.uuid4().hex[:16]}-{os.getpid()}",
        batch_max_readings=c.batch_max_readings,
        batch_max_bytes=c.batch_max_bytes,
        batch_interval_s=c.batch_interval_ms / 1000,
        live_every_batches=c.live_every_batches,
        retry_initial_s=c.retry_initial_ms / 1000,
        retry_max_s=c.retry_max_s,
        retry_unavailable_max_s=c.retry_unavailable_max_s,
        refused_recheck_s=c.refused_recheck_s,
    )
