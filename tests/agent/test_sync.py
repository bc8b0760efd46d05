"""The upload loop against an in-process fake receiver: retries, refusals, gaps, resync, live
batches. Sleeps are recorded, never slept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import tenacity
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.clock import AgentClock
from agent.keyfile import DeviceKey, write_private_key
from agent.metrics import Metrics
from agent.outage import duration
from agent.sync import KEY_POLL_S, Syncer, SyncSettings, _Backoff
from agent.uplink import Uplink, make_client
from agent.worker import BufferWorker
from tests.agent.fakes import FakeReceiver, reply
from tests.agent.helpers import BOOT, T0, decode, key, open_test_buffer, values_of, write_key
from wire.models import GENESIS


class FakeTime:
    def __init__(self):
        self.mono = 1_000

    def wall_ms(self):
        return T0 + self.mono

    def mono_ms(self):
        return self.mono


class Harness:
    def __init__(self, tmp_path, receiver: FakeReceiver, device_key=None, **settings):
        self.receiver = receiver
        self.on_sleep: Callable[[int], None] | None = (
            None  # called with the number of sleeps so far, before each returns
        )
        self.buffer = open_test_buffer(tmp_path / "b.db")
        self.worker = BufferWorker(self.buffer)
        self.time = FakeTime()
        self.now_s = 0.0  # the syncer's monotonic clock: moves only by the sleeps it asks for
        self.clock = AgentClock(
            self.time, lambda: True, kernel_boot_id=BOOT, floor_ms=0, next_epoch_id=1
        )
        self.metrics = Metrics()
        self.sleeps: list[float] = []
        self.client = make_client(
            ca_file=None, trust_env=False, timeout_s=5, transport=receiver.transport()
        )
        uplink = Uplink(
            self.client,
            base_url="https://ingest.test",
            key=receiver.key,
            now_ms=self.clock.now_ms,
            mono_ms=self.time.mono_ms,
        )
        defaults: dict[str, Any] = dict(
            device_id="gw-test",
            boot_id="b1",
            batch_max_readings=50,
            batch_interval_s=0.0,
            refused_recheck_s=900.0,
        )
        defaults.update(settings)
        self.syncer = Syncer(
            self.worker,
            uplink,
            self.clock,
            self.metrics,
            SyncSettings(**defaults),
            wake=asyncio.Event(),
            sleep=self.sleep,
            monotonic=lambda: self.now_s,
            device_key=device_key,
        )

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))
        await asyncio.sleep(0)

    def fill(self, n: int, start: int = 0) -> None:
        rows = [(1, T0 + i, float(i), 0) for i in range(start, start + n)]
        self.buffer.commit(rows, new_series=[] if 1 in self.buffer.series else [(1, key(1))])

    async def run_until(self, done, limit_s=5.0):
        task = asyncio.create_task(self.syncer.run(), name="sync")
        try:
            async with asyncio.timeout(limit_s):
                while not done():  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self):
        await self.client.aclose()
        self.worker.close()


@pytest.fixture
def receiver():
    return FakeReceiver(Ed25519PrivateKey.generate())


@pytest.fixture
async def harness(tmp_path, receiver):
    made = []

    def make(**settings):
        made.append(Harness(tmp_path, receiver, **settings))
        return made[-1]

    yield make
    for h in made:
        await h.close()


async def test_fresh_buffer_adopts_the_receivers_head(harness, receiver):
    receiver.head = (41, bytes(range(32)))
    receiver.batches[41] = b""  # not used: the agent never resends 41
    h = harness()
    h.fill(10)
    await h.run_until(lambda: h.metrics.readings_acked == 10)
    assert decode(receiver.batches[42]).prev == bytes(range(32))
    assert receiver.requests[0].url.path == "/v1/chain/head"


async def test_transient_failures_retry_the_same_bytes_and_honour_retry_after(harness, receiver):
    receiver.script = [
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("down", request=r)),
        lambda r: reply(503, {"error": "unavailable"}, {"retry-after": "30"}),
        lambda r: reply(429, {"error": "rate_limited"}, {"retry-after": "120"}),
    ]
    h = harness()
    h.buffer.adopt_head(0, GENESIS)
    h.fill(10)
    await h.run_until(lambda: h.metrics.readings_acked == 10)
    assert len(set(receiver.bodies)) == 1
    assert len(receiver.bodies) == 4
    assert h.metrics.retries == {"transport": 1, "server": 1, "rate_limited": 1}
    assert h.sleeps[1] >= 30
    assert h.sleeps[2] >= 120
    assert h.buffer.outbox_head() is None
    assert h.metrics.readings_acked == 10


async def test_refusal_stops_keeps_data_and_rechecks_slowly(harness, receiver):
    receiver.script = [lambda r: reply(403, {"error": "forbidden"})] * 3
    h = harness()
    h.buffer.adopt_head(0, GENESIS)
    h.fill(10)
    states = []

    def done():
        states.append(h.syncer.state)
        return h.metrics.readings_acked == 10

    await h.run_until(done)
    stopped = "stopped: 403 forbidden (device revoked or disabled; re-enrolment needed)"
    assert stopped in states
    assert h.sleeps.count(900.0) == 3  # re-checked slowly, then the device was re-enabled
    assert h.metrics.refusals == {"403": 3}
    assert len(set(receiver.bodies)) == 1  # never re-cut, never dropped
    assert [v for *_, v, _q in values_of(decode(receiver.batches[1]))] == [
        float(i) for i in range(10)
    ]


async def test_a_replaced_key_file_ends_the_refusal_wait_early(harness, receiver, tmp_path):
    key_file = tmp_path / "keys" / "device.key"
    receiver.key = write_key(key_file)
    receiver.script = [lambda r: reply(403, {"error": "forbidden"})]
    h = harness(device_key=DeviceKey(key_file))
    h.buffer.adopt_head(0, GENESIS)
    h.fill(10)
    new = Ed25519PrivateKey.generate()

    def re_enrol(sleeps: int) -> None:
        if sleeps == 2:  # ten seconds into the wait, an operator re-enrols the gateway
            write_private_key(key_file, new, overwrite=True)
            receiver.key = new  # ... and the receiver knows only the new key

    h.on_sleep = re_enrol
    await h.run_until(lambda: h.metrics.readings_acked == 10)
    assert h.sleeps == [KEY_POLL_S, KEY_POLL_S]  # not the 900 s recheck
    assert h.metrics.refusals == {"403": 1}
    assert h.metrics.key_reloads == 1


async def test_stopped_state_is_persisted_for_status(harness, receiver):
    receiver.script = [lambda r: reply(409, {"error": "chain_conflict", "expected_seq": 1})]
    h = harness()
    h.buffer.adopt_head(0, GENESIS)
    h.fill(5)
    seen: list[tuple[str, str]] = []

    def stopped() -> bool:
        # read both at the moment the state is persisted: the loop re-checks right after
        meta = h.buffer.meta
        if meta.get("uplink_state", "").startswith("stopped"):
            seen.append((meta["uplink_state"], meta.get("last_error", "")))
        return bool(seen)

    await h.run_until(stopped)
    state, error = seen[0]
    assert state.startswith("stopped: 409 chain_conflict")
    assert error.startswith("409 chain_conflict")


async def test_unfillable_seq_gap_stops(harness, receiver):
    receiver.head = (0, GENESIS)
    h = harness()
    h.buffer.adopt_head(5, bytes(32))  # the receiver lost batches 1..5 we had sent
    h.fill(5)
    await h.run_until(lambda: h.buffer.meta.get("uplink_state", "").startswith("stopped"))
    assert "409 seq_gap (receiver expects seq 1, ours is 6" in h.buffer.meta["uplink_state"]
    assert h.buffer.outbox_head() is not None


async def test_backlog_drains_in_full_batches_with_live_batches_between(harness, receiver):
    h = harness(batch_max_readings=100, live_every_batches=3)
    h.buffer.adopt_head(0, GENESIS)
    h.fill(1000)
    await h.run_until(lambda: h.buffer.depth == 0 and not h.buffer.outbox_head())
    sizes = [decode(receiver.batches[s]).reading_count() for s in sorted(receiver.batches)]
    assert sizes == [100] * 10
    firsts = [decode(receiver.batches[s]).series[0].values[0] for s in sorted(receiver.batches)]
    # every third batch while backlogged takes the newest readings
    assert firsts[2] == 999.0
    assert firsts[0] == 0.0
    assert firsts[1] == 100.0
    assert sorted(receiver.values()) == [float(i) for i in range(1000)]


def test_backoff_is_full_jitter_capped_and_respects_retry_after():
    wait = _Backoff(0.5, 10.0)

    def state(attempt, exc):
        rs = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        rs.attempt_number = attempt
        rs.outcome = tenacity.Future(attempt)
        rs.outcome.set_exception(exc)
        return rs

    from agent.errors import TransientUplinkError

    plain = TransientUplinkError("x", cause="server")
    waits = [wait(state(9, plain)) for _ in range(200)]
    assert max(waits) <= 10.0
    assert min(waits) < 5.0
    slow = TransientUplinkError("x", cause="rate_limited", retry_after_s=60.0)
    assert all(wait(state(1, slow)) >= 60.0 for _ in range(20))


def _refused(r):
    raise httpx.ConnectError("[Errno 111] Connection refused", request=r)


def _outage_lines(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "agent.outage"]


async def test_an_outage_is_one_line_down_and_one_line_back_not_one_per_retry(
    harness, receiver, caplog
):
    caplog.set_level(logging.INFO)
    receiver.script = [_refused] * 20
    h = harness()
    h.buffer.adopt_head(0, GENESIS)
    h.fill(10)
    gauge = []
    h.on_sleep = lambda n: gauge.append(h.metrics.uplink_up)
    await h.run_until(lambda: h.metrics.readings_acked == 10)
    down, back = _outage_lines(caplog)
    assert down == (
        "WARNING",
        "uplink down (ConnectError: [Errno 111] Connection refused): "
        "10 readings queued (1 batch frozen), oldest 1.0 s old; retrying",
    )
    level, text = back
    assert level == "INFO"
    assert text.startswith(f"uplink back after {duration(sum(h.sleeps))} down ")
    assert "(20 failed attempts, last: ConnectError: [Errno 111] Connection refused): " in text
    assert text.endswith("0 readings queued (0 batches frozen)")  # after the ack
    assert gauge == [0] * 20
    assert h.metrics.uplink_up == 1


async def test_a_long_outage_says_still_down_every_few_minutes_only(harness, receiver, caplog):
    caplog.set_level(logging.INFO)
    receiver.script = [_refused] * 40
    h = harness(still_down_log_s=30.0)
    h.buffer.adopt_head(0, GENESIS)
    h.fill(10)
    await h.run_until(lambda: h.metrics.readings_acked == 10)
    lines = _outage_lines(caplog)
    still = [text for _, text in lines if text.startswith("uplink still down after")]
    assert lines[0][1].startswith("uplink down")
    assert lines[-1][1].startswith("uplink back after")
    assert len(lines) == 2 + len(still)
    total = sum(h.sleeps)
    assert total > 40  # 36+ waits of up to 5 s; the chance of less is negligible
    assert 1 <= len(still) <= total // 30 + 1


async def test_unavailable_receiver_waits_at_most_the_short_cap_whatever_retry_max_s(
    harness, receiver
):
    """Connection-level failures and 502/503/504 wait <= retry_unavailable_max_s (5 s), so
    uploads resume within seconds of the receiver's return; retry_max_s (300 s) is untouched."""
    gateway = [lambda r, s=s: reply(s, {"error": "unavailable"}) for s in (502, 503, 504)]
    timeout = [lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r))]
    receiver.script = [_refused] * 20 + gateway * 3 + timeout * 3
    h = harness()
    assert h.syncer._s.retry_max_s == 300.0
    h.buffer.adopt_head(0, GENESIS)
    h.fill(10)
    await h.run_until(lambda: h.metrics.readings_acked == 10)
    assert len(h.sleeps) == 32
    assert max(h.sleeps) <= 5.0
    assert sum(h.sleeps) > 32  # still full jitter over the whole window, not a fixed tiny wait


async def test_rate_limits_and_server_errors_keep_the_long_backoff(harness, receiver):
    receiver.script = [lambda r: reply(429, {"error": "rate_limited"})] * 8 + [
        lambda r: reply(500, {"error": "internal"})
    ] * 8
    h = harness()
    h.buffer.adopt_head(0, GENESIS)
    h.fill(10)
    await h.run_until(lambda: h.metrics.readings_acked == 10)
    # ceilings 0.5 * 2^n up to 300 s: waits of up to minutes, as before
    assert max(h.sleeps[:8]) > 5.0
    assert max(h.sleeps[8:]) > 5.0


class _Top(random.Random):
    """A random source that always draws the top of the range: the ceiling."""

    def uniform(self, a, b):
        return b


def _state(attempt, exc):
    rs = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    rs.attempt_number = attempt
    rs.outcome = tenacity.Future(attempt)
    rs.outcome.set_exception(exc)
    return rs


def test_backoff_ceiling_depends_on_what_failed():
    from agent.errors import TransientUplinkError

    wait = _Backoff(0.5, 300.0, 5.0, rng=_Top())
    transport = TransientUplinkError("x", cause="transport")
    gone = TransientUplinkError("503", cause="server", status=503)
    busy = TransientUplinkError("429", cause="rate_limited", status=429)
    broken = TransientUplinkError("500", cause="server", status=500)
    assert [wait(_state(n, transport)) for n in range(1, 8)] == [0.5, 1, 2, 4, 5, 5, 5]
    assert wait(_state(30, gone)) == 5.0
    assert [wait(_state(n, busy)) for n in (1, 5, 9, 10, 30)] == [0.5, 8, 128, 256, 300]
    assert wait(_state(30, broken)) == 300.0
    back_later = TransientUplinkError("503", cause="server", status=503, retry_after_s=120.0)
    assert wait(_state(1, back_later)) == 120.0  # Retry-After beats the short cap
    assert _Backoff(0.02, 0.5, 5.0, rng=_Top())(_state(30, transport)) == 0.5  # never above max
