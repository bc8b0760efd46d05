"""kill -9 of the agent while messages keep arriving at QoS 1: after the restarts every message
is in the buffer exactly once.

The agent runs as a child process (`python -m tests.agent.sources.mqtt.test_source_crash child
...`): the real runtime (TaskGroup, flusher, SQLite buffer, sync loop against a receiver that is
down) with the MQTT source. A publisher in the test streams `{"id": n}` at QoS 1 to a mosquitto
of the test's own (the shared one may drop what it queues at its limit while the child
restarts); the child is killed with SIGKILL at random moments and started again on the same
buffer and client id, while the broker keeps queueing for the session. The redelivery record is
committed with the readings (agent.sources.mqtt.seen), so no kill leaves a duplicate.

TIERLESS_MQTT_KILLS sets the number of kill -9 cycles (12 by default; the figures in
docs/mqtt.md come from 100), TIERLESS_CHAOS_SEED the seed of the kill times.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.helpers import write_config, write_key
from tests.agent.sources.mqtt.test_source import (
    buffer_values,
    id_rule,
    own_broker,
    publish_stream,
    source_config,
    unique_client,
)
from tests.firmware_bridge.conftest import wait_until

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[4]
RATE_HZ = 300.0  # ~1 s of child start-up queues ~300: far below Mosquitto's default 1000
KILLS = int(os.environ.get("TIERLESS_MQTT_KILLS", "12"))


class Child:
    """One agent process; `ready` once its source is subscribed."""

    def __init__(self, workdir: Path, url: str, topic: str, client_id: str) -> None:
        self.args = ["child", str(workdir), url, topic, client_id]
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with (self.workdir / "child.log").open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.agent.sources.mqtt.test_source_crash",
                *self.args,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(15):
            line = await self.proc.stdout.readline()
        assert line == b"ready\n", (self.workdir / "child.log").read_text()[-3000:]

    async def kill9(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await self.proc.wait()
        self.proc = None
        return code


@contextlib.asynccontextmanager
async def child_agent(workdir: Path, url: str, topic: str, client_id: str) -> AsyncIterator[Child]:
    child = Child(workdir, url, topic, client_id)
    try:
        yield child
    finally:
        await child.kill9()


# each cycle starts a Python child, which takes seconds on an oversubscribed machine
@pytest.mark.timeout(60 + 20 * KILLS)
async def test_kill_9_while_messages_arrive_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(int(os.environ.get("TIERLESS_CHAOS_SEED", "7")))
    write_key(tmp_path / "keys" / "device.key")
    write_config(tmp_path, url="https://ingest.test", sources="")
    cid = unique_client()
    db = tmp_path / "data" / "buffer.db"
    stop = asyncio.Event()
    with own_broker(tmp_path / "broker") as broker:
        mqtt_url = broker.url
        async with child_agent(tmp_path, mqtt_url, "line", cid) as child:
            await child.start()
            stream = asyncio.create_task(
                publish_stream(mqtt_url, "line/m", 10**9, rate_hz=RATE_HZ, stop=stop),
                name="publisher",
            )
            kills = 0
            while kills < KILLS and not stream.done():
                await asyncio.sleep(rng.uniform(0.1, 0.9))
                await child.kill9()
                kills += 1
                await asyncio.sleep(rng.uniform(0.0, 0.3))  # messages queue at the broker
                await child.start()
            stop.set()
            attempts = await asyncio.wait_for(stream, 30)
            total = len(attempts)
            await wait_until(lambda: _covered(db) >= total, 30)
            assert await child.terminate() == 0
    ids = [int(v) for _k, v in buffer_values(db)]
    counts = collections.Counter(ids)
    assert kills == KILLS
    assert set(attempts.values()) == {1}  # the broker never failed the publisher
    assert sorted({i // 10 for i in ids}) == list(range(1, total + 1))  # nothing lost
    duplicates = sum(c - 1 for c in counts.values())
    if os.environ.get("TIERLESS_MQTT_CRASH_REPORT"):
        print(f"\nmqtt crash: {total} messages, {kills} kills, {duplicates} duplicates", flush=True)
    assert duplicates == 0, f"{duplicates} duplicates in {total} messages over {kills} kills"


def _covered(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return len({int(v) for _k, v in buffer_values(db)})
    except Exception:  # the child is writing: try again on the next poll
        return 0


def child_main(workdir: Path, url: str, topic: str, client_id: str) -> None:
    import httpx

    from agent.config import load_config
    from agent.runtime import Agent, RuntimeDeps
    from agent.sources.mqtt.source import MqttSource

    async def main() -> None:
        source = MqttSource(
            source_config(url, client_id, [id_rule(f"{topic}/{{device}}")]),
            state_dir=workdir / "data",
        )
        offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "down"}))
        agent = Agent(
            load_config(workdir / "agent.toml"),
            RuntimeDeps(transport=offline, sources=[source]),
        )

        async def announce() -> None:
            await source.connected.wait()
            print("ready", flush=True)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(announce(), name="announce")
            tg.create_task(agent.run(), name="agent")

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child_main(Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
