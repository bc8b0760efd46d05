"""A pushed config applied by the running agent (in-process, against the fake receiver): applied
within seconds with only the changed source restarted and nothing lost or duplicated; a config
whose serial port cannot open is rolled back and reported; bad configs are refused and the
running one stays. The files: agent.remote."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.remote import GOOD_NAME, PENDING_NAME, PINNED_NAME, PUSHED_NAME, load_running
from agent.runtime import Agent, RuntimeDeps
from tests.agent.fakes import FakeReceiver
from tests.agent.helpers import write_config, write_key
from wire.codec import decode_batch
from wire.keys import b64url_encode, public_key_to_raw
from wire.remoteconfig import SignedConfig, sign_config

CLOUD_KEY = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
SLOW = '[[sources]]\ntype = "test"\nname = "counter"\nrate_hz = 100\nseries = 1\n'
STEADY = (
    '[[sources]]\ntype = "test"\nname = "steady"\nrate_hz = 50\nseries = 1\nmetric = "steady"\n'
)


async def wait_for(condition, limit_s=20.0):
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 - state other tasks change
            await asyncio.sleep(0.02)


@pytest.fixture
def gateway(tmp_path):
    key = write_key(tmp_path / "keys" / "device.key")
    receiver = FakeReceiver(key)
    path = write_config(
        tmp_path,
        url="https://ingest.test",
        device_id="gw-test",
        sources=SLOW + STEADY,
        cloud={"health_interval_s": 1, "config_apply_window_s": 1.0},
    )
    raw = b64url_encode(public_key_to_raw(CLOUD_KEY.public_key()))
    (tmp_path / PINNED_NAME).write_text(raw + "\n")
    return receiver, path


def push(receiver, version, body, *, key=CLOUD_KEY, device="gw-test"):
    receiver.config = sign_config(key, device, version, body.encode())


async def run(path, receiver):
    stop = asyncio.Event()
    running = load_running(path)
    agent = Agent(
        running.config,
        RuntimeDeps(transport=receiver.transport(), stop=stop, handle_signals=False),
        running=running,
    )
    return agent, stop, asyncio.create_task(agent.run(), name="agent")


def last_result(receiver):
    return receiver.reports[-1].get("config_result") if receiver.reports else None


def per_version(receiver):
    out: dict[str, dict[str, list[float]]] = {}
    for seq in sorted(receiver.batches):
        b = decode_batch(receiver.batches[seq])
        for r in b.readings():
            out.setdefault(b.config_version, {}).setdefault(r.series.metric, []).append(r.value)
    return out


async def test_a_push_is_applied_within_seconds_restarting_only_what_changed(gateway):
    receiver, path = gateway
    agent, stop, task = await run(path, receiver)
    try:
        await wait_for(lambda: len(receiver.values()) > 20)
        steady_task = agent._source_tasks["steady"]
        faster = SLOW.replace("rate_hz = 100", "rate_hz = 200")
        push(receiver, 1, faster + STEADY)
        await wait_for(lambda: last_result(receiver) == "applied")
        assert agent.config_version == "v1"
        assert agent._source_tasks["steady"] is steady_task  # unchanged: never restarted
        await wait_for(lambda: "v1" in per_version(receiver))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    signed = msgspec.json.decode((path.parent / PUSHED_NAME).read_bytes(), type=SignedConfig)
    assert signed.version == 1
    assert not (path.parent / PENDING_NAME).exists()  # the window passed
    assert load_running(path).version == "v1"  # the next start runs it too
    # nothing lost, nothing twice: each series counts 1, 2, 3, ... across the switch
    merged: dict[str, list[float]] = {}
    for metrics in per_version(receiver).values():
        for metric, values in metrics.items():
            merged.setdefault(metric, []).extend(values)
    for metric, values in merged.items():
        assert sorted(values) == [float(n) for n in range(1, len(values) + 1)], metric


async def test_a_config_whose_port_cannot_open_is_rolled_back_and_reported(gateway, tmp_path):
    receiver, path = gateway
    agent, stop, task = await run(path, receiver)
    try:
        await wait_for(lambda: len(receiver.values()) > 10)
        before = agent.config_version
        broken = STEADY + (  # a scale on a serial port that does not exist
            '[[sources]]\ntype = "ascii"\nname = "scale"\n'
            'port = { path = "/dev/tierless-no-such-tty" }\nmode = "streaming"\n'
            "pattern = '(?P<net>\\d+)'\n"
            'values = [{ group = "net", metric = "net_mass", unit = "kg" }]\n'
        )
        push(receiver, 1, broken)
        await wait_for(lambda: (last_result(receiver) or "").startswith("rolled back"))
        assert last_result(receiver) == "rolled back: source scale down: port_lost"
        assert agent.config_version == before
        assert set(agent._source_tasks) == {"counter", "steady"}
        assert not (path.parent / PUSHED_NAME).exists()  # back to agent.toml alone
        assert not (path.parent / PENDING_NAME).exists()
        await asyncio.sleep(2.5)  # more acknowledgements: a failed version is not retried
        assert last_result(receiver) == "rolled back: source scale down: port_lost"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert load_running(path).version == before
    assert load_running(path).failed == 1

    # a restart does not try the failed version again
    def fetches():
        return sum(1 for r in receiver.requests if r.url.path == "/v1/config")

    fetched = fetches()
    agent, stop, task = await run(path, receiver)
    try:
        reports = len(receiver.reports)
        await wait_for(lambda: len(receiver.reports) >= reports + 3)
        assert agent.config_version == before
        assert fetches() == fetched
        assert last_result(receiver) is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: sign_config(Ed25519PrivateKey.generate(), "gw-test", 1, b""), "pinned key"),
        (lambda: sign_config(CLOUD_KEY, "gw-other", 1, b""), "for device 'gw-other'"),
        (lambda: sign_config(CLOUD_KEY, "gw-test", 1, b"[[sources]]\ntype = 1\n"), "sources"),
        (lambda: sign_config(CLOUD_KEY, "gw-test", 1, b"[device]\nid = 'x'\n"), "config"),
    ],
)
async def test_unsigned_foreign_or_bad_configs_are_refused_and_the_running_one_stays(
    gateway, make, why
):
    receiver, path = gateway
    agent, stop, task = await run(path, receiver)
    try:
        await wait_for(lambda: len(receiver.values()) > 5)
        receiver.config = make()
        await wait_for(lambda: (last_result(receiver) or "").startswith("refused"))
        assert why in last_result(receiver)
        assert agent.config_version != "v1"
        assert set(agent._source_tasks) == {"counter", "steady"}
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert not (path.parent / PUSHED_NAME).exists()
    assert not (path.parent / GOOD_NAME).exists()


METER_4S = '[[sources]]\ntype = "test"\nname = "meter"\nrate_hz = 0.25\nseries = 1\n'


async def test_a_good_push_to_a_gateway_that_reads_every_4_s_is_applied(tmp_path):
    """One meter read every 4 s, a batch cut as soon as a reading waits, a 2 s health window:
    the restarted source reads at once and its batch is acknowledged well inside the window.
    The window must see that ack when it lands, not when the ack's delete is next written (one
    reading, 4 s, later): a push that worked must not be rolled back as "no upload
    acknowledged"."""
    receiver = FakeReceiver(write_key(tmp_path / "keys" / "device.key"))
    path = write_config(
        tmp_path,
        url="https://ingest.test",
        sources=METER_4S,
        cloud={
            "health_interval_s": 1,
            "config_apply_window_s": 2.0,
            "batch_max_readings": 1,
            "batch_interval_ms": 60_000,
        },
    )
    (tmp_path / PINNED_NAME).write_text(
        b64url_encode(public_key_to_raw(CLOUD_KEY.public_key())) + "\n"
    )
    _agent, stop, task = await run(path, receiver)
    try:
        await wait_for(lambda: len(receiver.values()) >= 2)
        await asyncio.sleep(1.0)  # between two readings: nothing uncut at the switch
        push(receiver, 1, METER_4S.replace("rate_hz = 0.25", "rate_hz = 0.24"))
        await wait_for(lambda: last_result(receiver) is not None, limit_s=30)
        assert last_result(receiver) == "applied"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
