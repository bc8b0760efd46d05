"""OPC UA figures: readings per second from one subscription into the agent's buffer, next to a
plain asyncua client subscribed to the same server in the same run.

The server is `bench.opcua_plant` in a process of its own (asyncua's server, security None on
loopback), writing every variable of the plant as fast as it can. Both consumers subscribe to
every variable alike (publishing interval 100 ms, sampling interval 0, queue size 10) and are
measured over the same window after a warm-up, alternately, median of 3 runs each:

- `opcua.baseline_readings_per_s`: a plain asyncua client (its subscription iterator),
  counting data changes;
- `opcua.readings_per_s`: the agent in-process (runtime, flusher, SQLite buffer, receiver
  offline) with the OPC UA source, counting readings handed to the buffer (the run fails unless
  every one of them is committed by the end);
- `opcua.server_writes_per_s`, `opcua.baseline_server_writes_per_s`: what the server wrote
  meanwhile, in the agent's and in the plain client's windows: both consumers may be bounded by
  the server rather than by themselves, and the server's rate moves from window to window on a
  busy machine, so each consumer's rate is best read as a share of its own line;
- `opcua.cpu_us_per_reading`, `opcua.baseline_cpu_us_per_reading`: the consumer process's CPU
  time per reading in the same windows (the server runs in its own process), which tells the
  cost apart from the server's bound. The agent's includes its buffer's writer thread.

BENCH_SIZE=small: 200 variables, 2 s windows (about 50 s in all); full: 1,000 variables, 15 s
windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.opcua_plant import free_port

PUBLISHING_MS = 100
QUEUE = 10
WARMUP_S = 1.0


@contextlib.contextmanager
def plant_process(variables: int) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.opcua_plant", str(variables), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready", once the server listens
        if line.strip() != "ready":
            raise RuntimeError(f"the plant did not start ({proc.poll()=})")
        yield f"opc.tcp://127.0.0.1:{port}/plant"
    finally:
        proc.terminate()
        proc.wait(10)


def node_ids(variables: int) -> list[str]:
    per_line = -(-variables // 10)
    return [f"ns=2;s=Line{i // per_line + 1}.Tag{i % per_line}" for i in range(variables)]


async def written(url: str) -> float:
    client = Client(url, timeout=10)
    await client.connect()
    try:
        value = await client.get_node("ns=2;s=Plant.Written").read_value()
        return float(value)
    finally:
        await client.disconnect()


async def written_at(url: str, at: float) -> float:
    """`written(url)` at loop time `at`."""
    await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
    return await written(url)


async def baseline(url: str, variables: int, seconds: float) -> tuple[float, float, float]:
    client = Client(url, timeout=10)
    await client.connect()
    got = 0
    try:
        sub = await client.create_subscription(PUBLISHING_MS, None, queue_maxsize=1_000_000)
        nodes = [client.get_node(n) for n in node_ids(variables)]
        await sub.subscribe_data_change(nodes, queuesize=QUEUE, sampling_interval=ua.Double(0))
        loop = asyncio.get_running_loop()
        start = loop.time() + WARMUP_S
        end = start + seconds
        cpu0: float | None = None
        w0 = asyncio.create_task(written_at(url, start), name="written-start")
        w1 = asyncio.create_task(written_at(url, end), name="written-end")
        async with asyncio.timeout(WARMUP_S + seconds + 60):  # a lost server ends the run
            async for event in sub:
                now = loop.time()
                if now >= end:
                    break
                if now >= start:
                    if cpu0 is None:
                        cpu0 = time.process_time()
                    if isinstance(event, DataChangeEvent):
                        got += 1
        cpu = time.process_time() - (cpu0 or 0.0)
        writes = (await w1 - await w0) / seconds
        await sub.delete()
    finally:
        await client.disconnect()
    return got / seconds, cpu / max(got, 1) * 1e6, writes


async def agent(url: str, variables: int, seconds: float, work: Path) -> tuple[float, float, float]:
    from agent.config import parse_config
    from agent.keyfile import write_private_key
    from agent.runtime import Agent, RuntimeDeps
    from agent.sources.opcua.config import OpcuaNode, OpcuaSourceConfig
    from agent.sources.opcua.source import OpcuaSource

    write_private_key(work / "keys" / "device.key", Ed25519PrivateKey.generate())
    config = parse_config(
        '[device]\nid = "gw-bench"\nkey_file = "keys/device.key"\n'
        '[cloud]\nurl = "https://ingest.test"\nretry_max_s = 5\n'
        '[buffer]\npath = "buffer.db"\n[metrics]\nlisten = ""\n'
        '[clock]\nsync_check = "assume_synced"\n',
        name="bench.toml",
        base_dir=work,
    )
    source = OpcuaSource(
        OpcuaSourceConfig(
            url=url,
            publishing_interval_ms=PUBLISHING_MS,
            sampling_interval_ms=0,
            queue_size=QUEUE,
            nodes=[OpcuaNode(node_id=n, metric=n.rsplit("=", 1)[1]) for n in node_ids(variables)],
        )
    )
    offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "down"}))
    stop = asyncio.Event()
    runtime = Agent(
        config, RuntimeDeps(transport=offline, stop=stop, handle_signals=False, sources=[source])
    )
    task = asyncio.create_task(runtime.run(), name="agent")
    try:
        async with asyncio.timeout(120):
            while source.stats.readings == 0:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
        await asyncio.sleep(WARMUP_S)
        written0 = await written(url)
        read0, cpu0, started = source.stats.readings, time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        read1, cpu1, elapsed = source.stats.readings, time.process_time(), time.perf_counter()
        written1 = await written(url)
        elapsed -= started
    finally:
        stop.set()
        await task
    if source.stats.links_lost or source.stats.bad_readings:
        raise RuntimeError(f"the source lost the server during the bench: {source.stats}")
    # every reading handed over is in the buffer after the stop (its meta counts them; the
    # runtime's metric can miss a group whose commit a stop let finish in the background)
    with contextlib.closing(sqlite3.connect(work / "buffer.db")) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'total_committed'").fetchone()
    if row is None or int(row[0]) != source.stats.readings:
        raise RuntimeError(f"{source.stats.readings} readings handed over, {row} committed")
    read = read1 - read0
    return read / elapsed, (cpu1 - cpu0) / max(read, 1) * 1e6, (written1 - written0) / elapsed


def run(size: str) -> dict[str, float]:
    """The figures; a phase that fails is reported on stderr and left out, so the figures of
    the other phases (and of the other suites) are still printed and written."""
    variables, seconds = (1000, 15.0) if size == "full" else (200, 2.0)
    runs: dict[str, list[float]] = {
        "opcua.baseline_readings_per_s": [],
        "opcua.baseline_cpu_us_per_reading": [],
        "opcua.readings_per_s": [],
        "opcua.cpu_us_per_reading": [],
        "opcua.server_writes_per_s": [],
        "opcua.baseline_server_writes_per_s": [],
    }
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-opcua-") as d,
            plant_process(variables) as url,
        ):
            for i in range(3):
                try:
                    rate, cpu, writes = asyncio.run(baseline(url, variables, seconds))
                    runs["opcua.baseline_readings_per_s"].append(rate)
                    runs["opcua.baseline_cpu_us_per_reading"].append(cpu)
                    runs["opcua.baseline_server_writes_per_s"].append(writes)
                except Exception as exc:  # reported; the other phases go on
                    print(f"bench: opcua: baseline run {i} failed: {exc!r}", file=sys.stderr)
                try:
                    rate, cpu, writes = asyncio.run(
                        agent(url, variables, seconds, Path(d) / f"a{i}")
                    )
                    runs["opcua.readings_per_s"].append(rate)
                    runs["opcua.cpu_us_per_reading"].append(cpu)
                    runs["opcua.server_writes_per_s"].append(writes)
                except Exception as exc:  # reported; the other phases go on
                    print(f"bench: opcua: agent run {i} failed: {exc!r}", file=sys.stderr)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"bench: opcua: the plant server failed: {exc!r}", file=sys.stderr)
    return {key: statistics.median(values) for key, values in runs.items() if values}


if __name__ == "__main__":
    for key, value in run(os.environ.get("BENCH_SIZE", "small")).items():
        print(f"{key:32} {value:12,.0f}")
