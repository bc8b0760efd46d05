"""The MQTT source against real Mosquitto brokers: the shared one (`mqtt_url`, a unique topic
and client id per test) and, where a test restarts a broker or needs TLS, its own mosquitto
process on a free port with its own persistence directory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import msgspec
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.buffer import stored_body
from agent.config import load_config
from agent.errors import ConfigError
from agent.runtime import Agent, RuntimeDeps
from agent.sources.mqtt.config import MqttSourceConfig
from agent.sources.mqtt.source import MqttSource
from tests.agent.fakes import FakeReceiver
from tests.agent.helpers import journal_rows, write_config, write_key
from tests.conftest import service_missing
from tests.firmware_bridge.conftest import running, wait_until
from wire.codec import decode_batch
from wire.models import Event, SeriesKey

pytestmark = pytest.mark.mqtt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


# -- helpers (also used by test_source_crash.py and bench/mqtt.py) -------------------------------


def host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].rstrip("/")
    host, _, port = rest.partition(":")
    return host, int(port or 1883)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Our own mosquitto: a free port, persistence in `directory`, optional TLS and password."""

    def __init__(
        self,
        directory: Path,
        *,
        persistence: bool = True,
        tls: Any = None,  # a trustme.CA
        users: dict[str, str] | None = None,
        max_queued: int = 100_000,
        extra: tuple[str, ...] = (),
    ) -> None:
        if not os.access(MOSQUITTO, os.X_OK):
            service_missing(f"mosquitto at {MOSQUITTO}")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            # mosquitto started as root drops to "mosquitto", which cannot read tmp_path
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if users else 'true'}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.dir}/",
            "autosave_interval 3600",  # saved on SIGTERM; a kill -9 of the broker is not tested
            f"max_queued_messages {max_queued}",
            *extra,
            f"log_dest file {self.dir}/mosquitto.log",
        ]
        if tls is not None:
            cert = tls.issue_cert("127.0.0.1", "localhost")
            cert.private_key_and_cert_chain_pem.write_to_path(str(self.dir / "server.pem"))
            tls.cert_pem.write_to_path(str(self.dir / "ca.pem"))
            lines += [
                f"certfile {self.dir}/server.pem",
                f"keyfile {self.dir}/server.pem",
                f"cafile {self.dir}/ca.pem",
            ]
        if users:
            pw = self.dir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            pw.chmod(0o600)
            subprocess.run([MOSQUITTO_PASSWD, "-U", str(pw)], check=True, capture_output=True)
            lines.append(f"password_file {pw}")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.url = f"{'mqtts' if tls is not None else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        log_text = (self.dir / "mosquitto.log").read_text(errors="replace")
        raise RuntimeError(f"mosquitto did not start: {log_text[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # saves its persistence file
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@contextlib.contextmanager
def own_broker(directory: Path, **kwargs: Any) -> Iterator[Broker]:
    broker = Broker(directory, **kwargs)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class FakeSink:
    """The agent's Sink in memory; `committed()` waits while `commits` is clear."""

    def __init__(self, states: dict[str, bytes] | None = None) -> None:
        self.states = {} if states is None else states  # what "the buffer" holds
        self.capture: Callable[[], bytes | None] | None = None
        self.keys: dict[SeriesKey, int] = {}
        self.rows: list[tuple[SeriesKey, float, int, int | None]] = []
        self.commits = asyncio.Event()
        self.commits.set()
        self.space = 1_000_000  # what room() answers
        self.events: list[Event] = []

    def series_id(self, key: SeriesKey) -> int:
        return self.keys.setdefault(key, len(self.keys) + 1)

    def room(self) -> int:
        return self.space

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        key = next(k for k, i in self.keys.items() if i == series_id)
        self.rows.append((key, value, quality, ts_ms))

    def add_event(self, event: Event) -> None:
        # the MQTT source's only events are its gaps (source_down / source_up)
        assert event.kind in ("source_down", "source_up"), event
        self.events.append(event)

    def last_value(self, series_id: int) -> float | None:
        return None

    def track_state(self, capture: Callable[[], bytes | None]) -> bytes | None:
        self.capture = capture
        return self.states.get("mq")

    def state_changed(self) -> None:
        pass

    def commit(self) -> None:
        """What the agent's group commit does with the source's state (and its final flush)."""
        if self.capture is not None and (state := self.capture()) is not None:
            self.states["mq"] = state

    async def committed(self) -> None:
        await self.commits.wait()
        self.commit()

    def values(self) -> list[float]:
        return [v for _k, v, _q, _t in self.rows]


def source_config(
    url: str, client_id: str, rules: list[dict[str, Any]], **extra: Any
) -> MqttSourceConfig:
    body = {
        "type": "mqtt",
        "name": "mq",
        "url": url,
        "client_id": client_id,
        "session_expiry_s": 120,
        "reconnect_initial_ms": 50,
        "reconnect_max_s": 0.5,
        "timeout_s": 5,
        "rules": rules,
        **extra,
    }
    return msgspec.convert(body, MqttSourceConfig)


def id_rule(topic: str) -> dict[str, Any]:
    """Messages `{"id": n}` on `topic` become one reading of value n."""
    return {"topic": topic, "values": [{"metric": "id", "path": "id"}]}


async def drop_session(url: str, client_id: str, **kwargs: Any) -> None:
    """Remove a persistent session from the broker (clean start, expiry 0)."""
    host, port = host_port(url)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client = aiomqtt.Client(
        host,
        port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,
        properties=props,
        **kwargs,
    )
    async with asyncio.timeout(10), client:
        pass


@contextlib.asynccontextmanager
async def publisher(url: str, **kwargs: Any) -> AsyncIterator[aiomqtt.Client]:
    host, port = host_port(url)
    async with asyncio.timeout(10):
        client = aiomqtt.Client(host, port, identifier=f"pub-{uuid.uuid4().hex[:12]}", **kwargs)
        await client.__aenter__()
    try:
        yield client
    finally:
        async with asyncio.timeout(10):
            await client.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def source_running(source: MqttSource, sink: Any) -> AsyncIterator[None]:
    async with running(source.run(sink), f"source:{source.name}"):
        await asyncio.wait_for(source.connected.wait(), 10)
        yield


def unique_client() -> str:
    return f"tierless-test-{uuid.uuid4().hex[:12]}"


def buffer_values(db: Path) -> list[tuple[SeriesKey, float]]:
    """Every reading in a buffer file: uncut rows and frozen batches."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        series = {
            row[0]: SeriesKey(*row[1:])
            for row in conn.execute(
                "SELECT id, metric, unit, site, area, process, medium FROM series"
            )
        }
        out = [
            (series[s], v)
            for s, v in conn.execute("SELECT series_id, value FROM reading ORDER BY id")
        ]
        for body, coding in conn.execute("SELECT body, coding FROM outbox ORDER BY seq"):
            out += [(r.series, r.value) for r in decode_batch(stored_body(body, coding)).readings()]
        out += [(series[s], v) for s, _t, v, _q in journal_rows(db)]  # not yet merged
        return out
    finally:
        conn.close()


@pytest.fixture(autouse=True)
async def _nothing_left_running() -> AsyncIterator[None]:
    yield
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not left, f"tasks left behind: {left}"


# -- the shared broker -------------------------------------------------------------------------


async def test_readings_go_through_the_agent_to_the_receiver(mqtt_url, unique_topic, tmp_path):
    cid = unique_client()
    cfg = source_config(
        mqtt_url,
        cid,
        [
            {
                "preset": "shelly-gen2-switch",
                "topic": f"{unique_topic}/{{device}}/status/switch:{{channel}}",
                "site": "plant-1",
            },
            {
                "preset": "esphome-sensor",
                "topic": f"{unique_topic}/{{device}}/sensor/{{object}}/state",
            },
        ],
    )
    source = MqttSource(cfg, state_dir=tmp_path / "data")
    key = write_key(tmp_path / "keys" / "device.key")
    receiver = FakeReceiver(key)
    config = load_config(write_config(tmp_path, url="https://ingest.test", sources=""))
    stop = asyncio.Event()
    agent = Agent(
        config,
        RuntimeDeps(
            transport=receiver.transport(), stop=stop, handle_signals=False, sources=[source]
        ),
    )
    try:
        async with running(agent.run(), "agent"):
            await asyncio.wait_for(source.connected.wait(), 10)
            async with publisher(mqtt_url) as pub:
                for i in range(5):
                    status = {
                        "id": 0,
                        "output": True,
                        "apower": 100.0 + i,
                        "aenergy": {"total": 1000.0 + i},
                    }
                    await pub.publish(
                        f"{unique_topic}/shellyplus1pm-1/status/switch:0",
                        msgspec.json.encode(status),
                        qos=1,
                    )
                    await pub.publish(
                        f"{unique_topic}/boiler/sensor/flow/state", f"{60 + i}.5", qos=1
                    )
            await wait_until(lambda: len(receiver.values()) == 20, 15)
            stop.set()
    finally:
        await drop_session(mqtt_url, cid)
    got = collections.defaultdict(list)
    for seq in sorted(receiver.batches):
        for r in decode_batch(receiver.batches[seq]).readings():
            got[r.series].append(r.value)
    power = SeriesKey("shellyplus1pm-1.switch0.power", "W", site="plant-1", medium="electricity")
    assert got[power] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert got[SeriesKey("boiler.flow")] == [60.5, 61.5, 62.5, 63.5, 64.5]
    assert source.stats.acked == 10


async def test_bad_payloads_are_counted_and_the_source_goes_on(mqtt_url, unique_topic, caplog):
    cid = unique_client()
    cfg = source_config(
        mqtt_url,
        cid,
        [
            {
                "topic": f"{unique_topic}/json/{{device}}",
                "metric_template": "{device}.id",
                "values": [{"metric": "id", "path": "id"}],
            },
            {"topic": f"{unique_topic}/plain/+", "values": [{"metric": "plain"}]},
            {"topic": f"{unique_topic}/sw/switch:{{ch}}", "values": [{"metric": "sw{ch}"}]},
        ],
    )
    junk = [
        ("json/a", b"not json"),
        ("json/a", b'{"id": NaN}'),
        ("json/a", b'{"id": Infinity}'),
        ("json/a", b'{"id": "eleven"}'),
        ("json/a", b'{"id": {"nested": 1}}'),
        ("json/a", b'{"id": [1]}'),
        ("json/a", b'{"id": 1, "pad": "' + b"x" * 100_000 + b'"}'),
        ("json/a", b"[" * 5000 + b"]" * 5000),
        ("json/a", bytes(range(256))),
        ("json/a", b'{"other": 1}'),
        ("json/" + "x" * 300, b'{"id": 1}'),
        ("plain/b", b"-inf"),
        ("plain/b", b"\x00\x01\x02"),
        ("sw/input:0", b"1"),  # subscribed as sw/+, but no rule takes it
    ]
    async with publisher(mqtt_url) as pub:  # retained junk, there before the subscription
        await pub.publish(f"{unique_topic}/json/r", b"retained junk", qos=1, retain=True)
    source = MqttSource(cfg)
    sink = FakeSink()
    try:
        with caplog.at_level(logging.WARNING, logger="agent.sources.mqtt.source"):
            async with source_running(source, sink), publisher(mqtt_url) as pub:
                for n in range(1, 4):
                    for topic, payload in junk:
                        await pub.publish(f"{unique_topic}/{topic}", payload, qos=1)
                    await pub.publish(f"{unique_topic}/json/a", f'{{"id": {n}}}', qos=1)
                await pub.publish(f"{unique_topic}/plain/b", b"21.5", qos=1)
                await wait_until(lambda: source.stats.acked == 3 * (len(junk) + 1) + 2, 10)
    finally:
        async with publisher(mqtt_url) as pub:
            await pub.publish(f"{unique_topic}/json/r", b"", qos=1, retain=True)  # clear it
        await drop_session(mqtt_url, cid)
    assert sink.values() == [1.0, 2.0, 3.0, 21.5]
    assert dict(source.stats.problems) == {
        "not_json": 3,
        "non_finite": 9,
        "not_number": 6,  # "eleven", and control characters (valid UTF-8, not a number)
        "wrong_type": 6,
        "too_large": 3,
        "too_deep": 3,
        "binary": 3,
        "missing": 3,
        "bad_name": 3,
        "unknown_topic": 3,
        "retained": 1,
    }
    # Logged without flooding: one line per reason (the rest are held back for a minute).
    # (The shared broker's drop count, if another test made it drop, is not ours to count.)
    lines = [
        r.getMessage()
        for r in caplog.records
        if "mq:" in r.getMessage() and "dropped at its queue limits" not in r.getMessage()
    ]
    assert len(lines) == 9, lines  # unknown_topic is logged at INFO, below this capture

    assert not any("x" * 300 in line for line in lines)


async def test_acknowledged_only_after_the_commit(mqtt_url, unique_topic):
    cid = unique_client()
    cfg = source_config(mqtt_url, cid, [id_rule(f"{unique_topic}/{{device}}")])
    try:
        # 1. The buffer does not commit: the readings are handed over, nothing is acked.
        sink = FakeSink()
        sink.commits.clear()
        source = MqttSource(cfg)  # no state_dir: a new process knows nothing of what was seen
        async with source_running(source, sink), publisher(mqtt_url) as pub:
            for n in range(1, 6):
                await pub.publish(f"{unique_topic}/d", f'{{"id": {n}}}', qos=1)
            await wait_until(lambda: len(sink.rows) == 5)
            await asyncio.sleep(0.2)
            assert source.stats.acked == 0
        # 2. So the broker sends them again; this time commits go through and acks follow.
        sink2 = FakeSink()
        source2 = MqttSource(cfg)
        async with source_running(source2, sink2):
            await wait_until(lambda: source2.stats.acked == 5)
        assert sink2.values() == [1.0, 2.0, 3.0, 4.0, 5.0]
        # 3. Acked: nothing comes a third time. (A broker may take the session over for the
        # next connection before it has read the last PUBACKs of the one that just closed; the
        # record committed with the readings, which the agent's buffer keeps, covers those.)
        sink3 = FakeSink(sink2.states)
        async with source_running(MqttSource(cfg), sink3):
            await asyncio.sleep(0.3)
        assert sink3.rows == []
    finally:
        await drop_session(mqtt_url, cid)


async def test_a_full_sink_pauses_reading_and_keeps_the_connection(mqtt_url, unique_topic):
    """No room in the agent's ingest: messages wait in order in a bounded queue, then reading
    pauses (the broker holds the rest); once there is room every one is handed over once, in
    order, on the same connection."""
    from agent.sources.mqtt.source import HOLD_MAX

    total = HOLD_MAX * 2
    cid = unique_client()
    cfg = source_config(mqtt_url, cid, [id_rule(f"{unique_topic}/{{device}}")])
    try:
        sink = FakeSink()
        source = MqttSource(cfg)
        async with source_running(source, sink), publisher(mqtt_url) as pub:
            await pub.publish(f"{unique_topic}/d", b'{"id": 1}', qos=1)
            await wait_until(lambda: source.stats.acked == 1)
            sink.space = 0
            for n in range(2, total + 1):
                await pub.publish(f"{unique_topic}/d", f'{{"id": {n}}}', qos=1)
            await wait_until(lambda: source.stats.overflows == 1)
            await asyncio.sleep(0.3)
            assert source.held <= HOLD_MAX + 1  # the rest stays in TCP and with the broker
            assert source.stats.acked == 1
            sink.space = 1_000_000
            await wait_until(lambda: source.stats.acked == total, 15)
            assert source.held == 0
        assert sink.values() == [float(n) for n in range(1, total + 1)]  # each once, in order
        assert (source.stats.connects, source.stats.disconnects) == (1, 0)
    finally:
        await drop_session(mqtt_url, cid)


async def test_a_restart_does_not_duplicate_what_was_committed(mqtt_url, unique_topic, tmp_path):
    """Handed over, committed (by the agent's final flush) but not acked when the source
    stopped: redelivered to the next process with DUP set, recognised, not added again."""
    cid = unique_client()
    cfg = source_config(mqtt_url, cid, [id_rule(f"{unique_topic}/{{device}}")])
    try:
        sink = FakeSink()
        sink.commits.clear()
        source = MqttSource(cfg, state_dir=tmp_path)
        async with source_running(source, sink), publisher(mqtt_url) as pub:
            for n in range(1, 4):
                await pub.publish(f"{unique_topic}/d", f'{{"id": {n}}}', qos=1)
            await wait_until(lambda: len(sink.rows) == 3)
        sink.commit()  # the agent's final flush
        sink2 = FakeSink(sink.states)
        source2 = MqttSource(cfg, state_dir=tmp_path)
        async with source_running(source2, sink2), publisher(mqtt_url) as pub:
            await pub.publish(f"{unique_topic}/d", b'{"id": 4}', qos=1)
            await wait_until(lambda: source2.stats.acked == 4)
        assert source2.stats.duplicates == 3
        assert sink2.values() == [4.0]
    finally:
        await drop_session(mqtt_url, cid)


async def test_unsafe_password_file_is_refused(mqtt_url, tmp_path):
    pw = tmp_path / "mqtt.password"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    cfg = source_config(
        mqtt_url, unique_client(), [id_rule("x/{d}")], username="u", password_file=str(pw)
    )
    with pytest.raises(ConfigError, match="Permissions 0644") as info:
        await asyncio.wait_for(MqttSource(cfg).run(FakeSink()), 5)
    assert "secret" not in str(info.value)


# -- our own brokers ----------------------------------------------------------------------------


async def test_mqtts_with_a_ca_and_a_password_over_mqtt_3_1_1(tmp_path, caplog):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    with own_broker(tmp_path / "broker", tls=ca, users={"gateway": "s3cret-pw"}) as broker:
        pw = tmp_path / "mqtt.password"
        pw.write_text("s3cret-pw\n")
        pw.chmod(0o600)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        cfg = source_config(
            broker.url,
            unique_client(),
            [id_rule("site/{device}")],
            protocol="3.1.1",
            username="gateway",
            password_file=str(pw),
            ca_file=str(tmp_path / "ca.pem"),
        )
        sink = FakeSink()
        source = MqttSource(cfg)
        with caplog.at_level(logging.DEBUG):
            async with (
                source_running(source, sink),
                publisher(
                    broker.url,
                    username="gateway",
                    password="s3cret-pw",
                    tls_params=aiomqtt.TLSParameters(ca_certs=str(tmp_path / "ca.pem")),
                ) as pub,
            ):
                await pub.publish("site/m1", b'{"id": 7}', qos=1)
                await wait_until(lambda: source.stats.acked == 1)
        assert sink.values() == [7.0]
        assert "s3cret-pw" not in caplog.text
        # A wrong CA: the connection is refused and retried, never falls back to plain text.
        other = trustme.CA()
        other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
        bad = msgspec.structs.replace(cfg, ca_file=str(tmp_path / "other.pem"))
        source = MqttSource(bad)
        with caplog.at_level(logging.WARNING, logger="agent.sources.mqtt.source"):
            async with running(source.run(FakeSink()), "source"):
                await wait_until(lambda: "cannot reach the broker" in caplog.text, 10)
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text or "certificate verify" in caplog.text


async def test_broker_restart_mid_stream_loses_nothing(tmp_path):
    """A persistent broker is stopped and started again while a publisher streams at QoS 1 and
    the agent (in-process, real buffer, receiver offline) takes it in."""
    with own_broker(tmp_path / "broker") as broker:
        cid = unique_client()
        source = MqttSource(
            source_config(broker.url, cid, [id_rule("line/{device}")]), state_dir=tmp_path / "data"
        )
        write_key(tmp_path / "keys" / "device.key")
        config = load_config(write_config(tmp_path, url="https://ingest.test", sources=""))
        offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "unavailable"}))
        stop = asyncio.Event()
        agent = Agent(
            config,
            RuntimeDeps(transport=offline, stop=stop, handle_signals=False, sources=[source]),
        )
        total = 1200
        async with running(agent.run(), "agent"):
            await asyncio.wait_for(source.connected.wait(), 10)
            stream = asyncio.create_task(
                publish_stream(broker.url, "line/m", total, rate_hz=600), name="publisher"
            )
            await asyncio.sleep(0.8)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(broker.start)
            attempts = await asyncio.wait_for(stream, 30)
            await wait_until(lambda: source.stats.readings >= total, 15)
            await asyncio.sleep(0.3)
            stop.set()
        ids = [int(v) for _k, v in buffer_values(tmp_path / "data" / "buffer.db")]
    counts = collections.Counter(ids)
    assert {i // 10 for i in ids} == set(range(1, total + 1))  # nothing lost
    assert [i for i, c in counts.items() if c > 1] == []  # each publish attempt stored once
    assert source.stats.disconnects >= 1
    assert sum(attempts.values()) >= total


async def publish_stream(
    url: str, topic: str, total: int, *, rate_hz: float, stop: asyncio.Event | None = None
) -> dict[int, int]:
    """Publish `{"id": n*10 + attempt}` for n = 1..total (or until `stop` is set) at QoS 1,
    re-publishing what a broker outage interrupted (so a message can arrive twice, under two
    ids). Returns attempts per n."""
    host, port = host_port(url)
    attempts: dict[int, int] = {}
    client: aiomqtt.Client | None = None
    period = 1 / rate_hz
    due = time.monotonic()
    n = 1
    try:
        while n <= total and not (stop is not None and stop.is_set()):
            if client is None:
                try:
                    async with asyncio.timeout(5):
                        client = aiomqtt.Client(
                            host, port, identifier=f"pub-{uuid.uuid4().hex[:8]}", timeout=2
                        )
                        await client.__aenter__()
                except (aiomqtt.MqttError, TimeoutError):
                    client = None
                    await asyncio.sleep(0.05)
                    continue
            attempt = attempts.get(n, 0)
            attempts[n] = attempt + 1
            try:
                await client.publish(topic, f'{{"id": {n * 10 + attempt}}}', qos=1, timeout=2)
            except aiomqtt.MqttError:
                await quiet_close(client)
                client = None
                continue
            n += 1
            due += period
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
    finally:
        if client is not None:
            await quiet_close(client)
    return attempts


async def quiet_close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        await client.__aexit__(None, None, None)
    lost = client._disconnected  # read a lost connection's error, as the source does
    if lost.done() and not lost.cancelled():
        lost.exception()


async def test_a_broker_that_lost_our_session_is_reported(tmp_path, caplog):
    with own_broker(tmp_path / "broker", persistence=False) as broker:
        source = MqttSource(source_config(broker.url, unique_client(), [id_rule("a/{d}")]))
        with caplog.at_level(logging.WARNING, logger="agent.sources.mqtt.source"):
            async with source_running(source, FakeSink()):
                await asyncio.to_thread(broker.stop)
                await asyncio.to_thread(broker.start)
                await wait_until(lambda: source.stats.connects == 2, 10)
        assert source.stats.session_lost == 1
        assert "the broker has no session" in caplog.text


async def test_messages_the_broker_drops_at_its_queue_limit_are_reported(tmp_path, caplog):
    """Mosquitto's queue for an offline session is bounded (max_queued_messages, 1000 by
    default); what it drops there never reaches us, but its own count does, and is logged."""
    with own_broker(tmp_path / "broker", max_queued=5, extra=("sys_interval 1",)) as broker:
        cfg = source_config(broker.url, unique_client(), [id_rule("q/{d}")])
        async with source_running(MqttSource(cfg), FakeSink()):
            pass  # the session and its subscription exist; now we are away
        async with publisher(broker.url) as pub:
            for n in range(1, 31):
                await pub.publish("q/x", f'{{"id": {n}}}', qos=1)
        sink = FakeSink()
        source = MqttSource(cfg)
        with caplog.at_level(logging.WARNING, logger="agent.sources.mqtt.source"):
            async with source_running(source, sink):
                await wait_until(lambda: source.stats.broker_dropped > 0, 5)
    assert source.stats.broker_dropped + len(sink.rows) == 30
    assert "messages dropped at its queue limits" in caplog.text


def queue_backlog(url: str, topic: str, total: int, payload: str = '{{"id": {n}}}') -> None:
    """Publish `payload` (with n = 1..total) at QoS 1 from paho's own thread, every message
    acknowledged by the broker before returning (fast: 1,000 in flight)."""
    from paho.mqtt.client import Client as PahoClient
    from paho.mqtt.client import MQTTv311
    from paho.mqtt.enums import CallbackAPIVersion

    host, port = host_port(url)
    client = PahoClient(CallbackAPIVersion.VERSION2, client_id=unique_client(), protocol=MQTTv311)
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    try:
        for start in range(1, total + 1, 10_000):
            infos = [
                client.publish(topic, payload.format(n=n), qos=1)
                for n in range(start, min(total + 1, start + 10_000))
            ]
            for info in infos:
                info.wait_for_publish(30)
                assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


ENERGY = (
    '{{"ENERGY": {{"Total": {n}, "Today": 1, "Power": 2, "ApparentPower": 3, '
    '"ReactivePower": 4, "Factor": 1, "Voltage": 230, "Current": 0.1}}}}'
)


async def test_a_resumed_session_with_a_large_backlog_is_taken_in_once(tmp_path):
    """Resuming a session with a large backlog, Mosquitto 2.0 sends far more than our Receive
    Maximum before the SUBACK (tens of thousands of messages, measured). The source must
    neither give the connection up for a late SUBACK (the backlog would come again and again)
    nor forget what it handled while the broker overshot its window."""
    total = 20_000
    with own_broker(tmp_path / "broker") as broker:
        cid = unique_client()
        one_plug = {
            "preset": "tasmota",
            "topic": "tele/plug-1/SENSOR",
            "metric_template": "p1.{metric}",
        }
        first = MqttSource(source_config(broker.url, cid, [one_plug]))
        async with source_running(first, FakeSink()):
            pass  # the session exists; we go away and a backlog builds up
        await asyncio.to_thread(queue_backlog, broker.url, "tele/plug-1/SENSOR", total, ENERGY)
        # Meanwhile the rule was widened to every plug: its filter is new to the session.
        rules = [{"preset": "tasmota"}]
        source = MqttSource(source_config(broker.url, cid, rules, timeout_s=1), state_dir=tmp_path)
        write_key(tmp_path / "keys" / "device.key")
        config = load_config(write_config(tmp_path, url="https://ingest.test", sources=""))
        offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "down"}))
        stop = asyncio.Event()
        agent = Agent(
            config,
            RuntimeDeps(transport=offline, stop=stop, handle_signals=False, sources=[source]),
        )
        async with running(agent.run(), "agent"):
            await wait_until(lambda: source.stats.readings >= 8 * total, 40)
            stop.set()
    totals = [
        v
        for k, v in buffer_values(tmp_path / "data" / "buffer.db")
        if k.metric.endswith(".energy_total")
    ]
    assert sorted(totals) == [float(n) for n in range(1, total + 1)]  # each exactly once
    # never gave up on a late SUBACK, nor on a buffer that falls behind (invariant 6)
    assert (source.stats.connects, source.stats.disconnects) == (1, 0)


async def test_a_flood_faster_than_the_buffer_commits_pauses_reading_and_stores_each_once(
    tmp_path,
):
    """An ingest that holds only 50 readings (`flush_max_readings = 5`) under a broker backlog of
    8-reading messages: reading pauses again and again, the connection stays up, and every
    message is stored exactly once (the old way closed the connection, and some redeliveries
    came back as new readings)."""
    total = 3000
    with own_broker(tmp_path / "broker") as broker:
        cid = unique_client()
        rules = [{"preset": "tasmota"}]
        async with source_running(MqttSource(source_config(broker.url, cid, rules)), FakeSink()):
            pass  # the session exists; a backlog builds up while we are away
        await asyncio.to_thread(queue_backlog, broker.url, "tele/plug-1/SENSOR", total, ENERGY)
        source = MqttSource(source_config(broker.url, cid, rules))
        write_key(tmp_path / "keys" / "device.key")
        config = load_config(
            write_config(
                tmp_path,
                url="https://ingest.test",
                sources="",
                buffer={"flush_max_readings": 5},
            )
        )
        offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "down"}))
        stop = asyncio.Event()
        agent = Agent(
            config,
            RuntimeDeps(transport=offline, stop=stop, handle_signals=False, sources=[source]),
        )
        async with running(agent.run(), "agent"):
            await wait_until(lambda: source.stats.acked >= total, 90)
            stop.set()
    totals = [
        v
        for k, v in buffer_values(tmp_path / "data" / "buffer.db")
        if k.metric.endswith("energy_total")
    ]
    assert sorted(totals) == [float(n) for n in range(1, total + 1)]  # each exactly once
    assert source.stats.readings == 8 * total
    assert source.stats.overflows >= 1  # the ingest was full: reading paused
    assert (source.stats.connects, source.stats.disconnects) == (1, 0)
    assert agent.metrics.dropped["buffer_full"] == 0


async def test_a_new_session_voids_the_record_before_anything_new_is_read(tmp_path):
    """The broker lost our session: the record of the old one is emptied, and no message of the
    new session is read until that emptied record is committed (a restart in between could
    otherwise take a new message for the redelivery of an old one with the same id and bytes)."""
    from agent.sources.mqtt.seen import Seen

    with own_broker(tmp_path / "broker", persistence=False) as broker:
        cid = unique_client()
        cfg = source_config(broker.url, cid, [id_rule("a/{d}")])
        sink = FakeSink()
        source = MqttSource(cfg)
        async with source_running(source, sink):
            async with publisher(broker.url) as pub:
                await pub.publish("a/x", b'{"id": 1}', qos=1)
            await wait_until(lambda: source.stats.acked == 1)
            assert sink.states["mq"] != Seen(b"", 1, enabled=True).encode()  # holds message 1
            sink.commits.clear()  # the buffer stalls
            await asyncio.to_thread(broker.stop)
            await asyncio.to_thread(broker.start)
            await wait_until(lambda: source.stats.connects == 2, 10)
            await asyncio.sleep(0.2)  # let the source resubscribe
            async with publisher(broker.url) as pub:
                await pub.publish("a/x", b'{"id": 2}', qos=1)
            await asyncio.sleep(0.5)
            assert sink.values() == [1.0]  # not read: the emptied record is not committed yet
            sink.commits.set()
            await wait_until(lambda: source.stats.acked == 2, 10)
        assert sink.values() == [1.0, 2.0]
        empty = Seen(f"{cfg.url}\0{cid}".encode(), 1, enabled=True)
        assert empty.load(sink.states["mq"])
        assert [m for m, _ in empty.snapshot()] == [1]  # message 2 of the new session only
