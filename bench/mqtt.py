"""MQTT figures: messages and readings per second from a broker into the agent's buffer, next to
what the same broker delivers to a plain aiomqtt subscriber, measured in the same run.

Each phase runs against its own mosquitto (a free port, no persistence, no queue limits) and
the same backlog: a paho publisher (its own network thread) queues N Tasmota
ENERGY messages (10 readings each) at QoS 1 for a persistent session that is offline; then the
consumer connects and the clock runs until the last message is in (median of 3 runs):

- `mqtt.baseline_msgs_per_s`: a plain aiomqtt subscriber, MQTT 5, QoS 1 acknowledged at once
  by paho, counting messages (`async for message in client.messages`);
- `mqtt.msgs_per_s`, `mqtt.readings_per_s`: the agent in-process (runtime, flusher, SQLite
  buffer, receiver offline) with the MQTT source and the `tasmota` preset, MQTT 5, until every
  message is committed *and acknowledged* (`stats.acked == N`);
- `mqtt.msgs_per_s.v311`: the same over MQTT 3.1.1, where the broker's `max_inflight_messages`
  (Mosquitto's default, 20) bounds how many messages wait for one commit;
- `mqtt.commits_per_s`: buffer commits per second during the agent phase (ack-after-commit
  forces a commit as soon as messages wait for one, so groups grow with the load);
- `mqtt.duplicates`, `mqtt.pauses`, `mqtt.connects`: over all agent runs, redeliveries
  recognised, pauses in reading the socket (the ingest had no room) and connections made. Any
  reading beyond N * 10 (a redelivery stored twice) fails the bench;
- `mqtt.rss_mb_backlog`: the agent's peak RSS (VmHWM) taking in a broker backlog of B messages
  (MQTT 5, `tasmota` preset, 10 readings each) in a process of its own (`python -m bench.mqtt
  child ...`), which also fails on any reading beyond B * 10.

BENCH_SIZE=small: N = 10,000, B = 20,000 (about 30 s in all); full: N = 200,000, B = 250,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import msgspec
import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PAYLOAD = (
    b'{"Time":"2022-01-11T21:57:38","ENERGY":{"TotalStartTime":"2020-10-21T22:15:00",'
    b'"Total":3.705,"Yesterday":0.028,"Today":0.026,"Period":1,"Power":5,"ApparentPower":5,'
    b'"ReactivePower":0,"Factor":1.00,"Voltage":233,"Current":0.021}}'
)
READINGS_PER_MSG = 10  # the tasmota preset: 10 ENERGY values (8 before issue 13)
TOPIC = "tele/plug-1/SENSOR"
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def broker(directory: Path, *, inflight: int = 20) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = directory / f"mosquitto-{port}.conf"
    user = f"user {_user()}\n"  # mosquitto started as root would drop to "mosquitto"
    conf.write_text(
        f"{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages {inflight}\n"
        "log_dest none\n"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


async def _session(port: int, client_id: str, protocol: aiomqtt.ProtocolVersion) -> None:
    """Create the persistent session and its subscription, then go offline."""
    kwargs: dict[str, Any] = {}
    if protocol == aiomqtt.ProtocolVersion.V5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        kwargs = {"clean_start": False, "properties": props}
    else:
        kwargs = {"clean_session": False}
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=client_id, protocol=protocol, **kwargs
    ) as client:
        await client.subscribe(TOPIC, qos=1)


def _queue(port: int, n: int) -> None:
    """The publisher: n messages at QoS 1, every one acknowledged by the broker before this
    returns (paho's own network thread, 1,000 in flight). mosquitto_pub -l is faster but drops
    what it has not sent when its input ends."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for start in range(0, n, 10_000):  # packet ids are 16 bits: never 65,536 outstanding
            infos = [client.publish(TOPIC, PAYLOAD, qos=1) for _ in range(min(10_000, n - start))]
            for info in infos:
                info.wait_for_publish(60)
                if not info.is_published():
                    raise RuntimeError("the broker did not acknowledge a publish within 60 s")
    finally:
        client.disconnect()
        client.loop_stop()


async def baseline(directory: Path, n: int) -> float:
    with broker(directory) as port:
        cid = f"bench-{uuid.uuid4().hex[:8]}"
        await _session(port, cid, aiomqtt.ProtocolVersion.V5)
        await asyncio.to_thread(_queue, port, n)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        got = 0
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=cid,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
        ) as client:
            started = time.perf_counter()
            async with asyncio.timeout(300):
                async for _message in client.messages:
                    got += 1
                    if got == n:
                        break
            return n / (time.perf_counter() - started)


async def agent(
    directory: Path, n: int, protocol: str, totals: dict[str, int] | None = None
) -> tuple[float, float]:
    from agent.config import parse_config
    from agent.keyfile import write_private_key
    from agent.runtime import Agent, RuntimeDeps
    from agent.sources.mqtt.config import MqttSourceConfig
    from agent.sources.mqtt.source import MqttSource

    inflight = 20
    with broker(directory, inflight=inflight) as port:
        work = Path(tempfile.mkdtemp(dir=directory))
        write_private_key(work / "keys" / "device.key", Ed25519PrivateKey.generate())
        config = parse_config(
            '[device]\nid = "gw-bench"\nkey_file = "keys/device.key"\n'
            '[cloud]\nurl = "https://ingest.test"\nretry_max_s = 5\n'
            '[buffer]\npath = "buffer.db"\n[metrics]\nlisten = ""\n'
            '[clock]\nsync_check = "assume_synced"\n',
            name="bench.toml",
            base_dir=work,
        )
        cid = f"bench-{uuid.uuid4().hex[:8]}"
        version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
        await _session(port, cid, version)
        await asyncio.to_thread(_queue, port, n)
        source = MqttSource(
            msgspec.convert(
                {
                    "url": f"mqtt://127.0.0.1:{port}",
                    "client_id": cid,
                    "protocol": protocol,
                    "rules": [{"preset": "tasmota"}],
                },
                MqttSourceConfig,
            ),
            state_dir=work,
        )
        offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "down"}))
        stop = asyncio.Event()
        runtime = Agent(
            config,
            RuntimeDeps(transport=offline, stop=stop, handle_signals=False, sources=[source]),
        )
        task = asyncio.create_task(runtime.run(), name="agent")
        try:
            async with asyncio.timeout(300):
                while source.stats.messages == 0:  # noqa: ASYNC110 (no event to wait on)
                    await asyncio.sleep(0.001)
                started = time.perf_counter()
                commits0 = runtime.metrics.commits
                while source.stats.readings < n * READINGS_PER_MSG:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                elapsed = time.perf_counter() - started
                commits = runtime.metrics.commits - commits0
        finally:
            stop.set()
            await task
        if source.stats.readings != n * READINGS_PER_MSG:
            raise RuntimeError(f"expected {n * READINGS_PER_MSG} readings, got {source.stats}")
        if totals is not None:
            totals["duplicates"] += source.stats.duplicates
            totals["pauses"] += source.stats.overflows
            totals["connects"] += source.stats.connects

        return n / elapsed, commits / elapsed


async def backlog(directory: Path, n: int) -> dict[str, Any]:
    """The agent in a child process takes in an n-message backlog; its peak RSS and stats."""
    with broker(directory) as port:
        cid = f"bench-{uuid.uuid4().hex[:8]}"
        await _session(port, cid, aiomqtt.ProtocolVersion.V5)
        await asyncio.to_thread(_queue, port, n)
        work = Path(tempfile.mkdtemp(dir=directory))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.mqtt",
            "child",
            str(port),
            cid,
            str(work),
            str(n),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(600):
            out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the backlog child failed with exit code {proc.returncode}")
        result: dict[str, Any] = json.loads(out)
        return result


def child(port: int, cid: str, work: Path, n: int) -> None:
    """The backlog child: the agent (runtime, SQLite buffer, receiver offline) with the MQTT
    source, until n messages are committed and acknowledged; prints its figures as JSON."""

    async def main() -> dict[str, Any]:
        from agent.config import parse_config
        from agent.keyfile import write_private_key
        from agent.runtime import Agent, RuntimeDeps
        from agent.sources.mqtt.config import MqttSourceConfig
        from agent.sources.mqtt.source import MqttSource

        write_private_key(work / "keys" / "device.key", Ed25519PrivateKey.generate())
        config = parse_config(
            '[device]\nid = "gw-bench"\nkey_file = "keys/device.key"\n'
            '[cloud]\nurl = "https://ingest.test"\nretry_max_s = 5\n'
            '[buffer]\npath = "buffer.db"\n[metrics]\nlisten = ""\n'
            '[clock]\nsync_check = "assume_synced"\n',
            name="bench.toml",
            base_dir=work,
        )
        source = MqttSource(
            msgspec.convert(
                {
                    "url": f"mqtt://127.0.0.1:{port}",
                    "client_id": cid,
                    "protocol": "5",
                    "rules": [{"preset": "tasmota"}],
                },
                MqttSourceConfig,
            ),
        )
        offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "down"}))
        stop = asyncio.Event()
        runtime = Agent(
            config,
            RuntimeDeps(transport=offline, stop=stop, handle_signals=False, sources=[source]),
        )
        task = asyncio.create_task(runtime.run(), name="agent")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(540):
                while source.stats.acked < n:  # noqa: ASYNC110 (no event to wait on)
                    await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.5)  # anything beyond n would show up now
        finally:
            stop.set()
            await task
        stats = source.stats
        if stats.readings != n * READINGS_PER_MSG:
            raise RuntimeError(f"expected {n * READINGS_PER_MSG} readings, got {stats}")
        return {
            "vmhwm_kb": _status_kb("VmHWM"),
            "seconds": elapsed,
            "messages": stats.messages,
            "readings": stats.readings,
            "duplicates": stats.duplicates,
            "pauses": stats.overflows,
            "connects": stats.connects,
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run(size: str) -> dict[str, float]:
    n = 200_000 if size == "full" else 10_000
    b = 250_000 if size == "full" else 20_000
    totals = {"duplicates": 0, "pauses": 0, "connects": 0}
    base: list[float] = []
    msgs: list[float] = []
    commits: list[float] = []
    v311: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as d:
        directory = Path(d)
        for _ in range(3):
            base.append(asyncio.run(baseline(directory, n)))
            rate, commit_rate = asyncio.run(agent(directory, n, "5", totals))
            msgs.append(rate)
            commits.append(commit_rate)
        for _ in range(3 if size == "full" else 1):
            v311.append(asyncio.run(agent(directory, n // 4, "3.1.1", totals))[0])
        taken = asyncio.run(backlog(directory, b))
    print(
        f"bench.mqtt: backlog of {b:,} messages taken in by the agent in {taken['seconds']:.1f} s: "
        f"{taken['readings']:,} readings, {taken['duplicates']} duplicates recognised, "
        f"{taken['pauses']} pauses, {taken['connects']} connection(s), "
        f"peak RSS {taken['vmhwm_kb'] / 1024:.1f} MB",
        file=sys.stderr,
    )
    print(
        f"bench.mqtt: agent runs: {totals['duplicates']} duplicates recognised, "
        f"{totals['pauses']} pauses, {totals['connects']} connections",
        file=sys.stderr,
    )
    msgs_per_s = statistics.median(msgs)
    return {
        "mqtt.baseline_msgs_per_s": statistics.median(base),
        "mqtt.msgs_per_s": msgs_per_s,
        "mqtt.readings_per_s": msgs_per_s * READINGS_PER_MSG,
        "mqtt.msgs_per_s.v311": statistics.median(v311),
        "mqtt.commits_per_s": statistics.median(commits),
        "mqtt.duplicates": float(totals["duplicates"] + taken["duplicates"]),
        "mqtt.pauses": float(totals["pauses"] + taken["pauses"]),
        "mqtt.connects": float(totals["connects"]),
        "mqtt.rss_mb_backlog": taken["vmhwm_kb"] / 1024,
    }


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child(int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
elif __name__ == "__main__":
    for key, value in run(os.environ.get("BENCH_SIZE", "small")).items():
        print(f"{key:32} {value:12,.0f}")
