"""The OPC UA source against asyncua's own server (`bench.opcua_plant`): a small plant whose
publisher records every value it wrote, so what the source handed to the sink is compared with
what the server published, exactly (value, source timestamp to the millisecond, quality).

Size knobs for longer runs: TIERLESS_OPCUA_VARIABLES (200) and TIERLESS_OPCUA_RATE_HZ (5) for
the plant of the first test, TIERLESS_OPCUA_SECONDS (2) for how long it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asyncua import ua
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import parse_config
from agent.errors import ConfigError
from agent.keyfile import write_private_key
from agent.runtime import Agent, RuntimeDeps
from agent.sources.opcua.certs import load_certificate_der, make_client_identity
from agent.sources.opcua.config import OpcuaNode, OpcuaSourceConfig
from agent.sources.opcua.source import OpcuaSource
from agent.sources.registry import build_source
from bench.opcua_plant import Plant
from tests.agent.sources.conftest import Recorder
from tests.agent.sources.test_registry import agent_clock, context
from tests.firmware_bridge.conftest import running, wait_until
from wire.models import TIME_UNTRUSTED, Quality, Reading, SeriesKey

VARIABLES = int(os.environ.get("TIERLESS_OPCUA_VARIABLES", "200"))
RATE_HZ = float(os.environ.get("TIERLESS_OPCUA_RATE_HZ", "5"))
SECONDS = float(os.environ.get("TIERLESS_OPCUA_SECONDS", "2"))
# short waits, so a restart or a missing node shows within a test's seconds
FAST: dict[str, Any] = {
    "publishing_interval_ms": 100,
    "sampling_interval_ms": 0,
    "reconnect_initial_ms": 100,
    "reconnect_max_s": 0.5,
    "resolve_retry_s": 0.3,
    "watchdog_s": 2.0,  # a loaded machine answers a shorter probe late; a stop is seen at once
    "timeout_s": 5.0,
}


# asyncua's server takes seconds to build its standard address space on a loaded machine: the
# tests of this module share their plants (and so one event loop), and each test leaves the
# plant as it found it (statuses good, every node there, running).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant() -> AsyncIterator[Plant]:
    async with Plant(variables=8, lines=2, rate_hz=10) as p:
        yield p


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_plant() -> AsyncIterator[Plant]:
    async with Plant(variables=4, lines=1, rate_hz=10, secure=True) as p:
        yield p


def metric(node_id: str) -> str:
    return node_id.rsplit("=", 1)[1]


def config_for(plant: Plant, **overrides: Any) -> OpcuaSourceConfig:
    nodes = [OpcuaNode(node_id=n, metric=metric(n)) for n in plant.node_ids()]
    return OpcuaSourceConfig(url=plant.url, nodes=nodes, **{**FAST, **overrides})


def received(rec: Recorder, name: str) -> list[Reading]:
    return [r for r in rec.readings if r.series.metric == name]


def assert_exact(rec: Recorder, plant: Plant, node_ids: list[str]) -> int:
    """Per node, the good readings are a contiguous run of what the server published: no value
    lost, none repeated, none changed. Returns how many were compared."""
    compared = 0
    for node_id in node_ids:
        got = [
            (r.value, r.ts_ms, r.quality)
            for r in received(rec, metric(node_id))
            if r.quality != Quality.BAD
        ]
        published = [(p.value, p.ts_ms, 0) for p in plant.values_of(node_id)]
        assert got, f"nothing read from {node_id}"
        start = published.index(got[0])
        assert got == published[start : start + len(got)], node_id
        compared += len(got)
    return compared


def assert_polled(got: list[tuple[float, int]], published: list[tuple[float, int]]) -> None:
    """Polled readings are published values in the order published, each once. A poll reads
    the value current then: one replaced before the next poll is not read, so they need not be
    one contiguous run; one read again by the next poll is the same sample and not stored."""
    assert set(got) <= set(published), "a value the server never published"
    at = [published.index(g) for g in got]
    assert at == sorted(at), got
    assert len(set(at)) == len(at), f"a sample stored twice: {got}"


async def test_readings_are_exactly_what_the_server_published():
    async with Plant(variables=VARIABLES, lines=10, rate_hz=RATE_HZ) as plant:
        # the default watchdog: a big plant on a loaded machine answers the short one late
        source = OpcuaSource(config_for(plant, watchdog_s=5.0, timeout_s=10.0))
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.keys) == VARIABLES)
            target = len(rec.readings) + int(VARIABLES * RATE_HZ * SECONDS)
            await rec.wait_for(lambda: len(rec.readings) >= target, within=30 + SECONDS * 5)
        assert source.stats.links_lost == 0  # a gap would be marked, not a fault; not here
        compared = assert_exact(rec, plant, plant.node_ids())
    assert compared >= target / 2
    assert source.stats.bad_readings == 0
    assert source.stats.source_time_replaced == 0
    assert source.stats.connects == 1


async def test_browse_paths_and_engineering_units(plant):
    ns = plant.ns
    nodes = [
        OpcuaNode(browse_path=f"{ns}:Plant/{ns}:Line1/{ns}:Tag0", metric="flow"),
        OpcuaNode(browse_path=f"{ns}:Plant/{ns}:Line2/{ns}:Tag1", metric="level", unit="m"),
        OpcuaNode(node_id=f"ns={ns};s=Line1.Tag1", metric="temp", site="lab"),
    ]
    source = OpcuaSource(OpcuaSourceConfig(url=plant.url, nodes=nodes, site="plant-2", **FAST))
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await rec.wait_for(lambda: all(len(received(rec, n.metric)) >= 3 for n in nodes))
    units = {key.metric: key.unit for key in rec.keys}
    assert units == {"flow": "m³/h", "level": "m", "temp": ""}  # EUInformation, then config
    sites = {key.metric: key.site for key in rec.keys}
    assert sites == {"flow": "plant-2", "level": "plant-2", "temp": "lab"}
    flow = [(r.value, r.ts_ms) for r in received(rec, "flow")]
    published = [(p.value, p.ts_ms) for p in plant.values_of(f"ns={ns};s=Line1.Tag0")]
    start = published.index(flow[0])
    assert flow == published[start : start + len(flow)]


async def test_polling_reads_values_the_server_published(plant):
    source = OpcuaSource(config_for(plant, mode="poll", poll_interval_ms=150))
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await rec.wait_for(lambda: len(rec.readings) >= 8 * 5)
    published = {(p.node_id, p.value, p.ts_ms) for p in plant.published}
    for r in rec.readings:
        node_id = f"ns={plant.ns};s={r.series.metric}"
        assert (node_id, r.value, r.ts_ms) in published, r
        assert r.quality == Quality.GOOD


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_a_bad_status_is_a_bad_reading_and_counted_by_code(plant, mode):
    bad, uncertain = plant.node_ids()[0], plant.node_ids()[1]
    source = OpcuaSource(config_for(plant, mode=mode, poll_interval_ms=100))
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await rec.wait_for(lambda: len(rec.keys) == 8)
        plant.set_status(bad, 0x80310000)  # BadNoCommunication
        plant.set_status(uncertain, 0x408F0000)  # UncertainLastUsableValue

        def seen(name: str, quality: Quality) -> bool:
            return any(r.quality == quality for r in received(rec, metric(name)))

        try:
            await rec.wait_for(
                lambda: seen(bad, Quality.BAD) and seen(uncertain, Quality.UNCERTAIN)
            )
        finally:
            plant.set_status(bad, 0)
            plant.set_status(uncertain, 0)
        await rec.wait_for(lambda: received(rec, metric(bad))[-1].quality == Quality.GOOD)
    bad_readings = [r for r in received(rec, metric(bad)) if r.quality == Quality.BAD]
    assert {r.value for r in bad_readings} == {0.0}  # a bad value is never sent as a value
    uncertain_values = {p.value for p in plant.values_of(uncertain) if p.status}
    got = [r for r in received(rec, metric(uncertain)) if r.quality == Quality.UNCERTAIN]
    assert {r.value for r in got} <= uncertain_values  # the value is kept, flagged
    assert source.stats.status["0x80310000"] == len(bad_readings)
    assert source.stats.status["0x408F0000"] == len(got)
    assert source.stats.uncertain_readings == len(got)


@pytest.mark.filterwarnings(
    # asyncua's server forgets to await a callback of a deleted node's monitored item
    "ignore:coroutine 'MonitoredItemService.datachange_callback' was never awaited"
)
@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_a_node_that_disappears_gets_a_bad_marker_and_comes_back(plant, mode):
    gone = plant.node_ids()[3]
    missing = f"ns={plant.ns};s=NotThere"
    config = config_for(plant, mode=mode, poll_interval_ms=100)
    config = OpcuaSourceConfig(
        **{
            **{f: getattr(config, f) for f in config.__struct_fields__},
            "nodes": [*config.nodes, OpcuaNode(node_id=missing, metric="not_there")],
        }
    )
    source = OpcuaSource(config)
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await rec.wait_for(lambda: len(received(rec, metric(gone))) >= 3)
        assert [r.quality for r in received(rec, "not_there")] == [Quality.BAD]
        assert source.stats.nodes_missing == 1
        await plant.delete(gone)
        try:
            await wait_until(lambda: source.stats.nodes_missing == 2)
            await rec.wait_for(lambda: received(rec, metric(gone))[-1].quality == Quality.BAD)
            count, total = len(received(rec, metric(gone))), len(rec.readings)
            await rec.wait_for(lambda: len(rec.readings) >= total + 7 * 3)
            assert len(received(rec, metric(gone))) == count  # one marker, then silence
        finally:
            await plant.restore(gone)
        await rec.wait_for(lambda: len(received(rec, metric(gone))) >= count + 3)
        assert source.stats.nodes_missing == 1  # back, read in the same session
        assert source.stats.connects == 1
    back = [(r.value, r.ts_ms) for r in received(rec, metric(gone))[count:]]
    published = [(p.value, p.ts_ms) for p in plant.values_of(gone)]
    if mode == "subscribe":  # every value from the first one back on, once
        start = published.index(back[0])
        assert back == published[start : start + len(back)]
    else:
        assert_polled(back, published)
    assert source.stats.status["0x80340000"] >= 2  # BadNodeIdUnknown, for each


async def test_security_on_with_a_certificate_made_on_first_start(secure_plant, tmp_path):
    plant = secure_plant
    cert_file, key_file = tmp_path / "pki/client.der", tmp_path / "pki/client.key"
    (tmp_path / "server.der").write_bytes(plant.cert_der)
    secure = {
        "cert_file": str(cert_file),
        "key_file": str(key_file),
        "trusted_server_certs": [str(tmp_path / "server.der")],
        "application_uri": "urn:tierless:test:first-start",
    }
    # first start: the source makes its key pair; the server does not know it yet
    source = OpcuaSource(config_for(plant, security_policy="Basic256Sha256", **secure))
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await wait_until(lambda: source.stats.connect_failures >= 1)
    assert rec.readings == []
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert source.stats.certificate_rejected == 0  # it was the server that refused
    # the operator adds the gateway's certificate to the server's trust list
    plant.trusted_clients.append(load_certificate_der(str(cert_file)))
    for policy, mode in [("Basic256Sha256", "SignAndEncrypt"), ("Aes128_Sha256_RsaOaep", "Sign")]:
        config = config_for(plant, security_policy=policy, security_mode=mode, **secure)
        source = OpcuaSource(config)
        rec = Recorder()
        async with running(source.run(rec), f"opcua-{policy}"):
            await rec.wait_for(lambda: len(rec.readings) >= 4 * 5)  # noqa: B023 - awaited here
        assert_exact(rec, plant, plant.node_ids())
        assert source.stats.connects == 1


async def test_a_server_certificate_not_trusted_is_refused(secure_plant, tmp_path):
    plant = secure_plant
    stranger, _ = make_client_identity("urn:someone:else")
    (tmp_path / "other.der").write_bytes(stranger)
    cert, key = make_client_identity("urn:tierless:test:pinned")
    (tmp_path / "client.der").write_bytes(cert)
    (tmp_path / "client.key").write_bytes(key)
    (tmp_path / "client.key").chmod(0o600)
    plant.trusted_clients.append(cert)  # the server would take us: we refuse it
    config = config_for(
        plant,
        security_policy="Basic256Sha256",
        cert_file=str(tmp_path / "client.der"),
        key_file=str(tmp_path / "client.key"),
        trusted_server_certs=[str(tmp_path / "other.der")],
        application_uri="urn:tierless:test:pinned",
    )
    source = OpcuaSource(config)
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await wait_until(lambda: source.stats.certificate_rejected >= 2)
    assert rec.readings == []
    assert source.stats.connects == 0


async def test_a_client_key_others_can_read_is_a_config_error(tmp_path):
    cert, key = make_client_identity("urn:tierless:test")
    (tmp_path / "client.der").write_bytes(cert)
    (tmp_path / "client.key").write_bytes(key)
    (tmp_path / "client.key").chmod(0o644)
    (tmp_path / "server.der").write_bytes(cert)
    config = OpcuaSourceConfig(
        url="opc.tcp://127.0.0.1:4840",
        security_policy="Basic256Sha256",
        cert_file=str(tmp_path / "client.der"),
        key_file=str(tmp_path / "client.key"),
        trusted_server_certs=[str(tmp_path / "server.der")],
        nodes=[OpcuaNode(node_id="ns=2;s=A", metric="a")],
    )
    with pytest.raises(ConfigError, match="too open"):
        await OpcuaSource(config).run(Recorder())


class FixedStamper:
    """A clock at a fixed offset from the host's, trusted or not (bits as the agent's clock)."""

    def __init__(self, offset_ms: int, bits: int) -> None:
        self.offset_ms, self.bits = offset_ms, bits

    def now(self) -> tuple[int, int]:
        return time.time_ns() // 1_000_000 + self.offset_ms, self.bits


@pytest.mark.parametrize(
    ("offset_ms", "bits", "source_time"),
    [
        # 2 s apart, so that a stamp taken by one cannot pass for the other's
        (2_000, 0, True),  # trusted and agreeing: the server's source timestamp
        (5 * 3_600_000, 0, False),  # five hours apart: the agent's stamp
        (2_000, TIME_UNTRUSTED, False),  # the agent cannot judge: its stamp, flagged
    ],
)
async def test_the_source_timestamp_is_used_only_when_it_can_be_trusted(
    plant, offset_ms, bits, source_time
):
    clock = FixedStamper(offset_ms, bits)
    source = OpcuaSource(config_for(plant), clock=clock)
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await rec.wait_for(lambda: len(rec.readings) >= 8 * 3)
    published = {(p.value, p.ts_ms) for p in plant.published}
    from_source = [(r.value, r.ts_ms) in published for r in rec.readings]
    assert all(from_source) if source_time else not any(from_source)
    assert {r.quality for r in rec.readings} == {Quality.GOOD | bits}
    replaced = 0 if source_time else len(rec.readings)
    assert source.stats.source_time_replaced == replaced


async def test_build_source_makes_an_opcua_source_for_its_config():
    config = OpcuaSourceConfig(nodes=[OpcuaNode(node_id="ns=2;s=A", metric="a")])
    source = build_source(config, context(agent_clock()))
    assert isinstance(source, OpcuaSource)
    assert source.name == "opcua"


@pytest.mark.parametrize(
    ("value", "code", "expected"),
    [
        (42.5, 0x80310000, (0.0, Quality.BAD)),  # a Bad value is never sent as a value
        (42.5, 0x408F0000, (42.5, Quality.UNCERTAIN)),
        (7, 0x00000000, (7.0, Quality.GOOD)),
        (True, 0x00000000, (1.0, Quality.GOOD)),
        ("open", 0x00000000, (0.0, Quality.BAD)),  # not a number
        (float("nan"), 0x00000000, (0.0, Quality.BAD)),
    ],
)
async def test_a_value_becomes_one_reading(value, code, expected):
    # the servers in the tests above send no value with a Bad status; some do
    config = OpcuaSourceConfig(nodes=[OpcuaNode(node_id="ns=2;s=A", metric="a")])
    source = OpcuaSource(config, clock=FixedStamper(0, 0))
    rec = Recorder()
    source._ids[0] = rec.series_id(SeriesKey("a"))
    dv = ua.DataValue(ua.Variant(value), StatusCode=ua.StatusCode(ua.UInt32(code)))
    source._on_value(rec, 0, dv)
    (reading,) = rec.readings
    assert (reading.value, reading.quality) == expected


async def test_an_absolute_deadband_leaves_out_small_changes(plant):
    # the plant's values grow by 0.25 per write: with a deadband of 0.3 the server reports at
    # most every other one (asyncua's server compares with the previous value, so none at all
    # after the first; the standard says with the last reported, so every other one)
    nodes = [
        OpcuaNode(node_id=plant.node_ids()[5], metric="dead", deadband_abs=0.3),
        OpcuaNode(node_id=plant.node_ids()[6], metric="live"),
    ]
    source = OpcuaSource(OpcuaSourceConfig(url=plant.url, nodes=nodes, **FAST))
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await rec.wait_for(lambda: len(received(rec, "live")) >= 12)
    dead = [r.value for r in received(rec, "dead")]
    assert 1 <= len(dead) <= len(received(rec, "live")) // 2 + 1
    assert all(b - a > 0.3 for a, b in zip(dead, dead[1:], strict=False)), dead
    published = [(p.value, p.ts_ms) for p in plant.values_of(plant.node_ids()[5])]
    assert all((r.value, r.ts_ms) in published for r in received(rec, "dead"))


async def test_polling_while_no_node_is_found_keeps_the_session(plant):
    nodes = [OpcuaNode(browse_path=f"{plant.ns}:Plant/{plant.ns}:Nowhere", metric="nowhere")]
    config = OpcuaSourceConfig(url=plant.url, nodes=nodes, mode="poll", poll_interval_ms=50, **FAST)
    source = OpcuaSource(config)
    rec = Recorder()
    async with running(source.run(rec), "opcua"):
        await wait_until(lambda: source.stats.nodes_missing == 1)
        await asyncio.sleep(1.0)  # polls on, finds nothing, and must not drop the session
    assert source.stats.links_lost == 0
    assert source.stats.connects == 1
    assert rec.readings == []  # a path never resolved has no series yet (docs/opcua.md)


async def test_the_agent_commits_every_reading_the_source_hands_over(plant, tmp_path):
    # the runtime, its flusher and a real SQLite buffer, the receiver away
    write_private_key(tmp_path / "keys" / "device.key", Ed25519PrivateKey.generate())
    config = parse_config(
        '[device]\nid = "gw-opcua"\nkey_file = "keys/device.key"\n'
        '[cloud]\nurl = "https://ingest.test"\n[buffer]\npath = "buffer.db"\n'
        'flush_interval_ms = 100\n[metrics]\nlisten = ""\n[clock]\nsync_check = "assume_synced"\n',
        name="agent.toml",
        base_dir=tmp_path,
    )
    source = OpcuaSource(config_for(plant))
    offline = httpx.MockTransport(lambda r: httpx.Response(503, json={"error": "down"}))
    stop = asyncio.Event()
    agent = Agent(
        config, RuntimeDeps(transport=offline, stop=stop, handle_signals=False, sources=[source])
    )
    async with running(agent.run(), "agent") as task:
        await wait_until(lambda: source.stats.readings >= 8 * 10)
        stop.set()
        await task
    with contextlib.closing(sqlite3.connect(tmp_path / "buffer.db")) as db:
        (committed,) = db.execute("SELECT value FROM meta WHERE key = 'total_committed'").fetchone()
        rows = db.execute(
            "SELECT s.metric, r.ts_ms, r.value, r.quality FROM reading r "
            "JOIN series s ON s.id = r.series_id"
        ).fetchall()
    assert int(committed) == source.stats.readings
    published = {(metric(p.node_id), p.ts_ms, p.value, 0) for p in plant.published}
    assert rows
    assert set(rows) <= published  # in the buffer exactly as the server published them
