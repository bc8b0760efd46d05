"""The upload loop: cut a batch, deliver it until acknowledged, repeat. One batch in flight.

Decisions, per outcome of `agent.uplink`:
- Ack (stored or duplicate): delete the batch from the outbox, learn the receiver's time.
- TransientUplinkError (transport, 429, 5xx, zstd refused): retry the same bytes with tenacity,
  capped exponential backoff with full jitter (`retry_initial_ms` doubling up to a cap), never
  sooner than the receiver's Retry-After. Retries never give up: the data stays. The cap depends
  on what failed (`_Backoff`): `retry_unavailable_max_s` (5 s) when the receiver is simply not
  there (connection refused or reset, timeout, 502/503/504), so uploads resume within about
  that long after it comes back, and the full jitter spreads a fleet's return over that window;
  `retry_max_s` (300 s) for what a quick retry cannot fix (429, 500, anything else).
- RefusedError (400, 401, 403, 409 chain_conflict, 413, 415) and a seq_gap we cannot fill:
  state "stopped: <reason>" in status and metrics, the batch and all new readings stay buffered,
  and the same bytes are offered again every `refused_recheck_s` (an operator may have re-enabled
  the device). Nothing is ever dropped because the receiver said no.
- A frozen batch that no longer reads back from the buffer file (damage SQLite's own checks do
  not see: a body that does not inflate or match its digest): the same "stopped" state and
  re-check, the sources still collecting. Not sent, and not skipped: either would fork the chain.
- 409 seq_gap: resend from `expected_seq` if the outbox still has it. With one batch in flight
  every earlier batch was acknowledged, so a gap means the receiver lost batches it had acked:
  that is an alarm, not something the agent can repair.

Cutting: a batch is cut when `batch_max_readings` are waiting (readings and events together), or
`batch_interval_ms` after the previous cut if anything (readings, events or loss counts) is
waiting. After an outage the backlog drains
in full-size batches back to back; every `live_every_batches`-th batch during a backlog is cut
from the *newest* readings instead of the oldest, so fresh data is at most that many batch
round trips old while a large backlog drains behind it (measured in docs/agent.md).

A fresh buffer (first start, or after damage) does not know the receiver's chain head, so before
its first cut it asks (`GET /v1/chain/head`) and continues from there instead of forking.

Outages are logged once per change, not per retry (`agent.outage`): down with the reason and
the backlog, still down every few minutes, back with how long it was down and what is queued.

Key rotation: before every attempt (batch or chain head) the device key file is checked
(`DeviceKey.refresh`, one lstat) and, if it was replaced, the new key signs from that attempt on.
A replaced file that cannot be used leaves the old key signing (valid at the receiver for the
rotation's overlap) and shows in status (`key_error`) and metrics until the file is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from agent.buffer import OutboxEntry
from agent.clock import AgentClock
from agent.errors import (
    RefusedError,
    SeqGapError,
    TransientUplinkError,
    UnreadableBatchError,
)
from agent.keyfile import DeviceKey
from agent.metrics import Metrics
from agent.outage import STILL_DOWN_EVERY_S, Backlog, Notice, Outages
from agent.uplink import Ack, Uplink
from agent.worker import BufferWorker
from wire.http import ErrorCode
from wire.models import ClockReport, ClockState

log = logging.getLogger(__name__)
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


# While uploads are stopped by a refusal, the key file is looked at this often (one lstat).
KEY_POLL_S = 5.0
# HTTP statuses that mean "the receiver is not there right now" (a proxy or load balancer in
# front of it, or its own 503 while the database is away): retried like a refused connection.
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class SyncSettings:
    device_id: str
    boot_id: str
    batch_max_readings: int = 20_000
    batch_max_bytes: int = 1024 * 1024
    batch_interval_s: float = 5.0
    live_every_batches: int = 4
    retry_initial_s: float = 0.5
    retry_max_s: float = 300.0
    retry_unavailable_max_s: float = 5.0
    refused_recheck_s: float = 900.0
    still_down_log_s: float = STILL_DOWN_EVERY_S


def unavailable(exc: BaseException | None) -> bool:
    """The receiver could not be reached or said it is briefly away: a retry succeeds as soon as
    it is back, so waiting long only delays the upload."""
    if not isinstance(exc, TransientUplinkError):
        return False
    return exc.cause == "transport" or exc.status in UNAVAILABLE_STATUSES


class _Backoff(tenacity.wait.wait_base):
    """Full jitter: uniform in [0, min(cap, initial * 2^(n-1))] before retry n, where the cap is
    `unavailable_max_s` for `unavailable` failures (never above `max_s`) and `max_s` for the
    rest; never less than the receiver's Retry-After."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        unavailable_max_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._initial = initial_s
        self._max = max_s
        self._unavailable_max = min(unavailable_max_s, max_s)
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        cap = self._unavailable_max if unavailable(exc) else self._max
        ceiling = min(cap, self._initial * 2.0 ** min(retry_state.attempt_number - 1, 60))
        wait = self._rng.uniform(0, ceiling)
        retry_after = getattr(exc, "retry_after_s", None)
        return max(wait, retry_after) if retry_after is not None else wait


class Syncer:
    def __init__(
        self,
        worker: BufferWorker,
        uplink: Uplink,
        clock: AgentClock,
        metrics: Metrics,
        settings: SyncSettings,
        *,
        wake: asyncio.Event,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        device_key: DeviceKey | None = None,
    ) -> None:
        self._worker = worker
        self._buffer = worker.buffer
        self._uplink = uplink
        self._clock = clock
        self._metrics = metrics
        self._s = settings
        self._wake = wake
        self._sleep = sleep
        self._monotonic = monotonic
        self._last_cut = monotonic()
        self._backlog_cuts = 0
        self._probed = False
        self._device_key = device_key
        self._key_state: tuple[str, str | None] | None = None
        self._outages = Outages(still_down_every_s=settings.still_down_log_s)
        self._back: Notice | None = None  # the receiver answered again; logged after the step
        self.state = "starting"

    async def run(self) -> None:
        """Forever; cancel to stop (the outbox makes that safe at any await)."""
        await self._set_state("starting")
        while True:
            if not self._buffer.chain_confirmed:
                await self._with_refusals(self._resync)
                await self._log_back()
                continue
            if not self._probed and self._clock.state == ClockState.UNTRUSTED:
                # Only to learn the receiver's time: a refusal here must not hold batches back
                # (the batch itself will meet the same refusal and be handled there).
                with contextlib.suppress(RefusedError):
                    await self._resync()
                self._probed = True
                await self._log_back()
            try:
                entry = await self._worker.call(self._buffer.outbox_head)
            except UnreadableBatchError as exc:
                await self._unreadable(exc)
                continue
            if entry is None:
                entry = await self._next_cut()
            await self._with_refusals(functools.partial(self._deliver, entry))
            await self._log_back()

    # -- cutting --------------------------------------------------------------------------

    async def _next_cut(self) -> OutboxEntry:
        interval = self._s.batch_interval_s
        while True:
            self._wake.clear()
            uncut = await self._worker.call(self._buffer.waiting)
            due = self._monotonic() - self._last_cut >= interval
            if uncut >= self._s.batch_max_readings or due:
                await self._store_clock_news()
                backlog = uncut > self._s.batch_max_readings
                self._backlog_cuts = self._backlog_cuts + 1 if backlog else 0
                every = self._s.live_every_batches
                newest = backlog and every > 0 and self._backlog_cuts % every == 0
                entry = await self._worker.call(
                    self._buffer.cut,
                    device_id=self._s.device_id,
                    boot_id=self._s.boot_id,
                    clock=ClockReport(self._clock.state, self._clock.offset_ms),
                    max_readings=self._s.batch_max_readings,
                    max_bytes=self._s.batch_max_bytes,
                    newest=newest,
                )
                self._last_cut = self._monotonic()
                if entry is not None:
                    return entry
                continue
            remaining = interval - (self._monotonic() - self._last_cut)
            try:
                async with asyncio.timeout(max(remaining, 0.001)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _store_clock_news(self) -> None:
        """Commit clock epochs and corrections now rather than with the next flush, so that a
        correction learned from the last response applies to the batch about to be cut."""
        epochs, refs = self._clock.take_new_epochs(), self._clock.take_references()
        if epochs or refs:
            await self._worker.call(self._buffer.commit, [], new_epochs=epochs, references=refs)

    # -- delivering -----------------------------------------------------------------------

    async def _deliver(self, entry: OutboxEntry) -> None:
        await self._set_state("sending")
        try:
            ack = await self._retrying(lambda: self._uplink.send_batch(entry.seq, entry.body))
        except SeqGapError as exc:
            if exc.expected_seq == entry.seq:  # nothing missing after all: send again
                return
            raise RefusedError(
                f"409 seq_gap (receiver expects seq {exc.expected_seq}, ours is {entry.seq}; "
                "it lost batches it had acknowledged)",
                status=409,
                code=ErrorCode.SEQ_GAP,
            ) from exc
        await self._acknowledged(entry, ack)

    async def _acknowledged(self, entry: OutboxEntry, ack: Ack) -> None:
        if ack.server_time_ms is not None:
            self._clock.observe_server_time(ack.server_time_ms, ack.sent_mono_ms, ack.recv_mono_ms)
        readings = await self._worker.call(self._buffer.ack, entry.seq, now_ms=self._clock.now_ms())
        await self._log_back()
        m = self._metrics
        m.batches_acked[ack.status] = m.batches_acked.get(ack.status, 0) + 1
        m.readings_acked += readings
        m.events_acked += entry.events
        m.bytes_sent += ack.wire_bytes
        await self._set_state("idle")

    async def _resync(self) -> None:
        """Ask the receiver for its chain head: to continue the chain on a fresh buffer, and to
        learn its time when our clock is untrusted, before the first batch is cut."""
        head = await self._retrying(self._uplink.chain_head)
        self._probed = True
        if head.server_time_ms is not None:
            self._clock.observe_server_time(
                head.server_time_ms, head.sent_mono_ms, head.recv_mono_ms
            )
        if not self._buffer.chain_confirmed:
            await self._worker.call(self._buffer.adopt_head, head.seq, head.digest)
            log.info("continuing the receiver's chain after seq %d", head.seq)
        await self._log_back()

    async def _retrying(self, attempt_fn: Callable[[], Awaitable[T]]) -> T:
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(TransientUplinkError),
            wait=_Backoff(
                self._s.retry_initial_s, self._s.retry_max_s, self._s.retry_unavailable_max_s
            ),
            sleep=self._sleep,
            before_sleep=self._on_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._follow_key()
                self._metrics.batches_sent += 1
                try:
                    result = await attempt_fn()
                except SeqGapError:
                    self._answered()  # an answer all the same: the receiver is there
                    raise
                self._answered()
                return result
        raise AssertionError("unreachable")  # pragma: no cover - tenacity never stops

    async def _follow_key(self) -> None:
        """Sign with the key file's current key; persist the key state when it changes."""
        dk = self._device_key
        if dk is None:
            return
        if dk.refresh():
            self._uplink.key = dk.key
        m = self._metrics
        m.key_reloads, m.key_reload_failures = dk.reloads, dk.failures
        m.key_reload_failing = int(dk.error is not None)
        state = (dk.keyid, dk.error)
        if state != self._key_state:
            self._key_state = state
            await self._worker.call(self._buffer.set_meta, key_id=dk.keyid, key_error=dk.error)

    async def _on_retry(self, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        cause = getattr(exc, "cause", "unknown")
        self._metrics.retries[cause] = self._metrics.retries.get(cause, 0) + 1
        if cause != "encoding":  # a zstd refusal is retried at once in gzip: no outage
            notice = self._outages.failed(str(exc), self._monotonic())
            self._metrics.uplink_up = 0
            if notice is not None:
                notice.log(await self._backlog())
        await self._set_state("retrying", error=str(exc))

    def _answered(self) -> None:
        notice = self._outages.succeeded(self._monotonic())
        self._metrics.uplink_up = 1
        if notice is not None:
            self._back = notice

    async def _log_back(self) -> None:
        """Say the uplink is back once the answer that found it back has been applied, so that
        the line's backlog no longer counts the batch just acknowledged. Called where a step
        ends (ack, chain head, the loop's turn); only the first call after an outage logs."""
        notice, self._back = self._back, None
        if notice is not None:
            notice.log(await self._backlog())

    async def _backlog(self) -> Backlog:
        buffer = self._buffer

        def read() -> tuple[int, int, int, int | None]:
            return buffer.depth, buffer.events_held, buffer.outbox_batches(), buffer.oldest_ts_ms()

        readings, events, batches, oldest = await self._worker.call(read)
        age = None if oldest is None else max(0.0, (self._clock.now_ms() - oldest) / 1000)
        return Backlog(readings, events, batches, age)

    async def _with_refusals(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run one step; on a refusal, alarm and wait `refused_recheck_s` before the next try."""
        try:
            await step()
        except RefusedError as exc:
            key = str(exc.status)
            self._metrics.refusals[key] = self._metrics.refusals.get(key, 0) + 1
            self._outages.refused(str(exc), self._monotonic())
            self._metrics.uplink_up = 0
            log.error(
                "uploads stopped: %s; data stays buffered, re-checking in %.0f s",
                exc,
                self._s.refused_recheck_s,
            )
            await self._set_state("stopped", error=str(exc))
            await self._wait_after_refusal()

    async def _unreadable(self, exc: UnreadableBatchError) -> None:
        """A frozen batch that no longer reads back (a damaged file) stops uploads like a
        refusal: the sources go on collecting into the buffer, the alarm shows in status and
        metrics, and the batch is read again every `refused_recheck_s`. Sending anything else
        in its place would fork the chain, and ending the agent would stop collection too."""
        self._metrics.refusals["unreadable"] = self._metrics.refusals.get("unreadable", 0) + 1
        self._metrics.uplink_up = 0
        log.error(
            "uploads stopped: %s; new readings stay buffered, re-reading it in %.0f s "
            "(docs/agent.md, guarantee 6)",
            exc,
            self._s.refused_recheck_s,
        )
        await self._set_state("stopped", error=str(exc))
        await self._sleep(self._s.refused_recheck_s)

    async def _wait_after_refusal(self) -> None:
        """Wait `refused_recheck_s`, but try again at once when the key file is replaced: a
        re-enrolment or a rotation is how an operator answers most refusals."""
        left = self._s.refused_recheck_s
        if self._device_key is None:
            await self._sleep(left)
            return
        while left > 0:
            step = min(KEY_POLL_S, left)
            await self._sleep(step)
            left -= step
            dk = self._device_key
            if dk is not None and dk.refresh():
                self._uplink.key = dk.key
                log.info("the device key changed while uploads were stopped: trying again now")
                return

    async def _set_state(self, state: str, *, error: str | None = None) -> None:
        self.state = f"stopped: {error}" if state == "stopped" and error else state
        self._metrics.uplink_state = state
        if state == "sending":
            return  # the hot path: no write per batch
        fields: dict[str, Any] = {
            "uplink_state": self.state,
            "clock_state": int(self._clock.state),
        }
        if error is not None:
            fields.update(last_error=error, last_error_ms=self._clock.now_ms())
        # Persisted for `edge-agent status`; set_meta skips unchanged values.
        await self._worker.call(self._buffer.set_meta, **fields)
