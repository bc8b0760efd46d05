"""The OPC UA source losing its server and getting it back: a server restarted on the same port
(asyncua's own, `bench.opcua_plant`) and a network drop (a TCP relay in between that cuts every
connection). Each is one gap (one `source_down`, one `source_up`, one log line each). After a
drop the session is recovered and every value the server published meanwhile arrives once;
after a restart (or with `on_link_lost = "new_session"`) the session and its monitored items are
made again. No value is stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from agent.sources.gaps import DOWN_KIND, UP_KIND
from agent.sources.opcua.certs import ensure_client_identity
from agent.sources.opcua.config import OpcuaSourceConfig
from agent.sources.opcua.source import OpcuaSource
from bench.opcua_plant import Plant
from tests.agent.sources.conftest import Recorder
from tests.agent.sources.opcua.test_source import config_for, metric, received
from tests.firmware_bridge.conftest import running, wait_until
from wire.models import Quality

pytestmark = pytest.mark.asyncio(loop_scope="module")
LOGGER = "agent.sources.opcua.source"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant() -> AsyncIterator[Plant]:
    async with Plant(variables=6, lines=2, rate_hz=10) as p:
        yield p


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_plant() -> AsyncIterator[Plant]:
    async with Plant(variables=4, lines=1, rate_hz=10, secure=True) as p:
        yield p


class Relay:
    """A TCP relay to `port`; `cut()` closes every connection through it (a network drop), and
    it keeps accepting new ones."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listen_port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # the pumps from the server to the client, with the server side they read
        self._down: dict[asyncio.Task[None], asyncio.StreamReader] = {}
        self.accepted = 0
        self.refusing = False  # the network is down: new connections are closed at once

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self.cut()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers |= {writer, up_writer}
        pumps: list[asyncio.Task[None]] = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._down[pumps[1]] = up_reader
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()  # the peer closed its side: pass that on (a stall closes nothing)

    async def stall(self) -> None:
        """Stop passing bytes on the connections there are, and leave them open: a link that
        went silent (a switch down between gateway and PLC), which only a timeout can tell."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._down.clear()

    async def deafen(self) -> None:
        """On the connections there are, pass the client's bytes on and throw the server's
        away, leaving everything open: what the server sends is lost on the way."""
        for task, up_reader in list(self._down.items()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._tasks.discard(task)
            self._tasks.add(asyncio.create_task(self._discard(up_reader)))
        self._down.clear()

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async def cut(self) -> None:
        await self.stall()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._writers.clear()


def kinds(rec: Recorder) -> list[str]:
    return [e.kind for e in rec.events]


def assert_no_value_twice(rec: Recorder, node_ids: list[str]) -> None:
    for node_id in node_ids:
        good = [(r.ts_ms, r.value) for r in received(rec, metric(node_id)) if r.quality == 0]
        assert len(good) == len(set(good)), f"{node_id}: a value stored twice"


@pytest.mark.filterwarnings(
    # asyncua's server forgets to await a callback of a monitored item of a node it lost
    "ignore:coroutine 'MonitoredItemService.datachange_callback' was never awaited"
)
@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_a_restarted_server_is_one_gap_then_every_value_and_a_lost_node_once(
    plant, mode, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ids = plant.node_ids()
    gone, others = ids[4], [n for n in ids if n != ids[4]]
    source = OpcuaSource(config_for(plant, mode=mode, poll_interval_ms=100))
    rec = Recorder()
    try:
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.keys) == 6 and len(rec.readings) >= 30)
            await plant.stop()
            await wait_until(lambda: source.stats.links_lost == 1)
            assert kinds(rec) == [DOWN_KIND]
            marks = {n: len(received(rec, metric(n))) for n in ids}
            if mode == "poll":  # a BAD reading per node for each poll missed while down
                await rec.wait_for(
                    lambda: all(len(received(rec, metric(n))) >= marks[n] + 3 for n in ids)
                )
            published_before = len(plant.published)
            plant.absent.add(gone)  # the PLC program changed while the server was down
            await plant.start()
            first_after = plant.published[published_before].ts_ms
            await wait_until(lambda: source.stats.connects == 2, within=20)

            def after(node_id: str) -> list[tuple[float, int]]:
                return [
                    (r.value, r.ts_ms)
                    for r in received(rec, metric(node_id))
                    if r.ts_ms >= first_after and r.quality != Quality.BAD
                ]

            await rec.wait_for(lambda: all(len(after(n)) >= 5 for n in others), within=20)
            await wait_until(lambda: source.stats.nodes_missing == 1)
    finally:
        plant.absent.clear()
        if gone not in plant._nodes:
            await plant.restore(gone)
    assert kinds(rec) == [DOWN_KIND, UP_KIND]
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    if mode == "subscribe":  # the restarted server does not know the session: a new one
        assert source.stats.sessions_recovered == 0
        assert sum("no longer has the session" in m for _, m in lines) == 1, lines
    assert sum(m.startswith("opcua: lost (link_lost: opc.tcp://") for _, m in lines) == 1, lines
    assert sum(m.startswith("opcua: back after ") for _, m in lines) == 1, lines
    assert sum(f"no node {gone}" in m for _, m in lines) == 1, lines  # reported once
    assert source.stats.outages.downs == source.stats.outages.ups == 1
    # what came after the up event, by arrival: a missed poll's marker may carry the same
    # millisecond as the up event on a loaded machine (seen once in the 10-run loop)
    after_up = rec.readings[rec.readings_before[1] :]
    gone_after = [r for r in after_up if r.series.metric == metric(gone)]
    assert {r.quality for r in gone_after} <= {Quality.BAD}
    assert len(gone_after) <= 1  # its one marker when found missing, then silence
    for node_id in others:
        got = after(node_id)
        published = [(p.value, p.ts_ms) for p in plant.values_of(node_id)]
        if mode == "subscribe":  # every value from the restarted server's first on, once
            start = published.index(got[0])
            assert got == published[start : start + len(got)], node_id
        else:
            assert set(got) <= set(published), node_id
    if mode == "subscribe":
        assert_no_value_twice(rec, others)
    else:  # while down: a BAD reading per node per missed poll (100 ms), not one for the gap
        bad = [r for r in received(rec, metric(others[0])) if r.quality == Quality.BAD]
        assert len(bad) >= 3


async def test_a_network_drop_recovers_the_session_and_stores_every_value_once(plant, caplog):
    await drop_recovered(plant, caplog)


async def test_a_secure_session_is_recovered_too(secure_plant, caplog, tmp_path):
    plant = secure_plant
    cert_file, key_file = tmp_path / "client.der", tmp_path / "client.key.pem"
    (tmp_path / "server.der").write_bytes(plant.cert_der)
    uri = "urn:tierless:test:recovery"
    identity = ensure_client_identity(str(cert_file), str(key_file), uri)
    plant.trusted_clients.append(identity.certificate_der)
    await drop_recovered(
        plant,
        caplog,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        cert_file=str(cert_file),
        key_file=str(key_file),
        trusted_server_certs=[str(tmp_path / "server.der")],
        application_uri=uri,
    )


async def drop_recovered(plant: Plant, caplog: pytest.LogCaptureFixture, **overrides: Any) -> None:
    """A drop of about 3 s with the session recovered: every value the server published
    meanwhile stored once, no BAD reading, one gap, the log saying so."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ids = plant.node_ids()
    n = len(ids)
    async with Relay(plant.port) as relay:
        url = plant.url.replace(f":{plant.port}/", f":{relay.listen_port}/")
        # 10 Hz for about 3 s of drop: the items' queues hold 100 values
        base = config_for(plant, queue_size=100, **overrides)
        fields = {f: getattr(base, f) for f in base.__struct_fields__}
        source = OpcuaSource(OpcuaSourceConfig(**{**fields, "url": url}))
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.keys) == n and len(rec.readings) >= 5 * n)
            relay.refusing = True
            await relay.cut()
            cut_at = plant.published[-1].ts_ms
            await wait_until(lambda: source.stats.links_lost == 1)
            await asyncio.sleep(3)
            back_at = plant.published[-1].ts_ms
            relay.refusing = False
            await wait_until(lambda: source.stats.connects == 2, within=20)
            last = plant.published[-1].ts_ms
            await rec.wait_for(
                lambda: all(any(r.ts_ms >= last for r in received(rec, metric(n))) for n in ids)
            )
    assert kinds(rec) == [DOWN_KIND, UP_KIND]
    during = 0
    for node_id in ids:
        got = [(r.value, r.ts_ms) for r in received(rec, metric(node_id))]
        assert len(got) == len(set(got)), f"{node_id}: a value stored twice"
        got.sort(key=lambda vt: vt[1])
        published = [(p.value, p.ts_ms) for p in plant.values_of(node_id) if p.ts_ms <= got[-1][1]]
        start = published.index(got[0])
        assert got == published[start:], node_id  # every value, the drop's included
        during += sum(cut_at < ts <= back_at for _, ts in got)
    # what the server published while the link was down, all of it (10 Hz a node when the
    # machine keeps up)
    published_during = sum(cut_at < p.ts_ms <= back_at for p in plant.published)
    assert during == published_during >= 5 * n, (during, published_during)
    assert all(r.quality == Quality.GOOD for r in rec.readings)  # no gap in the data: no BAD
    assert source.stats.sessions_recovered == 1
    assert source.stats.notifications_lost == 0
    lines = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("opcua: lost (link_lost: ") for m in lines) == 1, lines
    assert sum(m.startswith("opcua: session recovered after ") for m in lines) == 1, lines
    assert sum(m.startswith("opcua: back after ") for m in lines) == 1, lines


async def test_a_drop_longer_than_the_queues_keeps_their_newest_values(plant, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ids = plant.node_ids()
    async with Relay(plant.port) as relay:
        url = plant.url.replace(f":{plant.port}/", f":{relay.listen_port}/")
        base = config_for(plant, queue_size=3)  # 10 Hz for about 3 s: far more than 3 a node
        fields = {f: getattr(base, f) for f in base.__struct_fields__}
        source = OpcuaSource(OpcuaSourceConfig(**{**fields, "url": url}))
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.keys) == 6 and len(rec.readings) >= 30)
            relay.refusing = True
            await relay.cut()
            await wait_until(lambda: source.stats.links_lost == 1)
            before = {n: max(r.ts_ms for r in received(rec, metric(n))) for n in ids}
            await asyncio.sleep(3)
            relay.refusing = False
            await wait_until(lambda: source.stats.sessions_recovered == 1, within=20)
            back = {n: plant.values_of(n)[-1].ts_ms for n in ids}
            last = plant.published[-1].ts_ms
            await rec.wait_for(
                lambda: all(any(r.ts_ms >= last for r in received(rec, metric(n))) for n in ids)
            )
    assert all(r.quality == Quality.GOOD for r in rec.readings)  # a recovered session: no BAD
    assert_no_value_twice(rec, ids)
    for node_id in ids:
        published = [(p.value, p.ts_ms) for p in plant.values_of(node_id)]
        got = {(r.value, r.ts_ms) for r in received(rec, metric(node_id))}
        assert got <= set(published), node_id
        during = [vt for vt in published if before[node_id] < vt[1] <= back[node_id]]
        kept = [vt for vt in during if vt in got]
        # the server kept the newest of the drop (at most its queue, what it sampled while
        # the session came back included) and discarded the older ones
        assert 1 <= len(kept) < len(during), (node_id, len(kept), len(during))
        assert kept == during[len(during) - len(kept) :], node_id


async def test_notifications_lost_on_the_way_are_republished(plant, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ids = plant.node_ids()
    async with Relay(plant.port) as relay:
        url = plant.url.replace(f":{plant.port}/", f":{relay.listen_port}/")
        base = config_for(plant, queue_size=100, watchdog_s=1.0, timeout_s=2.0)
        fields = {f: getattr(base, f) for f in base.__struct_fields__}
        source = OpcuaSource(OpcuaSourceConfig(**{**fields, "url": url}))
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.keys) == 6 and len(rec.readings) >= 30)
            await relay.deafen()  # the server answers Publish; its answers never arrive
            await wait_until(lambda: source.stats.links_lost == 1, within=30)
            await wait_until(lambda: source.stats.connects == 2, within=30)
            last = plant.published[-1].ts_ms
            await rec.wait_for(
                lambda: all(any(r.ts_ms >= last for r in received(rec, metric(n))) for n in ids)
            )
    assert source.stats.republished >= 1
    assert source.stats.sessions_recovered == 1
    assert source.stats.notifications_lost == 0
    assert kinds(rec) == [DOWN_KIND, UP_KIND]
    for node_id in ids:  # every value, those of the messages lost on the way included
        got = sorted(
            ((r.value, r.ts_ms) for r in received(rec, metric(node_id))), key=lambda v: v[1]
        )
        assert len(got) == len(set(got)), f"{node_id}: a value stored twice"
        published = [(p.value, p.ts_ms) for p in plant.values_of(node_id) if p.ts_ms <= got[-1][1]]
        assert got == published[published.index(got[0]) :], node_id
    assert all(r.quality == Quality.GOOD for r in rec.readings)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("opcua: session recovered after ") for m in lines) == 1, lines


async def test_a_drop_longer_than_the_session_timeout_makes_a_new_session(plant, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ids = plant.node_ids()
    async with Relay(plant.port) as relay:
        url = plant.url.replace(f":{plant.port}/", f":{relay.listen_port}/")
        base = config_for(plant, session_timeout_ms=5000)  # asyncua's server grants 5 s at least
        fields = {f: getattr(base, f) for f in base.__struct_fields__}
        source = OpcuaSource(OpcuaSourceConfig(**{**fields, "url": url}))
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.keys) == 6 and len(rec.readings) >= 30)
            relay.refusing = True
            await relay.cut()
            await wait_until(lambda: source.stats.links_lost == 1)
            down_ts = rec.events[0].ts_ms
            await asyncio.sleep(6)
            relay.refusing = False
            await wait_until(lambda: source.stats.connects == 2, within=20)
            count = len(rec.readings)
            await rec.wait_for(lambda: len(rec.readings) >= count + 6 * 5)
    assert source.stats.sessions_recovered == 0
    assert kinds(rec) == [DOWN_KIND, UP_KIND]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("the session has timed out on the server" in m for m in lines) == 1, lines
    assert sum(m.startswith("opcua: back after ") for m in lines) == 1, lines
    for node_id in ids:  # the values of the drop are lost: one BAD reading at the loss marks it
        bad = [r for r in received(rec, metric(node_id)) if r.quality == Quality.BAD]
        assert len(bad) == 1, node_id
        assert abs(bad[0].ts_ms - down_ts) <= 100, (bad[0].ts_ms, down_ts)
    assert_no_value_twice(rec, ids)


async def test_without_recovery_a_drop_makes_the_items_again_and_stores_no_value_twice(
    plant, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ids = plant.node_ids()
    still = ids[2]
    async with Relay(plant.port) as relay:
        url = plant.url.replace(f":{plant.port}/", f":{relay.listen_port}/")
        base = config_for(plant, on_link_lost="new_session")
        fields = {f: getattr(base, f) for f in base.__struct_fields__}
        source = OpcuaSource(OpcuaSourceConfig(**{**fields, "url": url}))
        rec = Recorder()
        try:
            async with running(source.run(rec), "opcua"):
                await rec.wait_for(lambda: len(rec.keys) == 6 and len(rec.readings) >= 30)
                plant.frozen.add(still)  # its value and source timestamp stay as they are
                last = plant.values_of(still)[-1]

                def has_last() -> bool:
                    return any(r.ts_ms == last.ts_ms for r in received(rec, metric(still)))

                await rec.wait_for(has_last)
                accepted = relay.accepted
                await relay.cut()
                await wait_until(lambda: source.stats.links_lost == 1)
                await wait_until(lambda: source.stats.connects == 2, within=20)
                assert relay.accepted > accepted
                count = len(rec.readings)
                await rec.wait_for(lambda: len(rec.readings) >= count + 5 * 5)
        finally:
            plant.frozen.clear()
    # the replayed current value of the node that did not change was delivered before the drop
    assert source.stats.replays_skipped >= 1
    good_still = [r for r in received(rec, metric(still)) if r.quality == Quality.GOOD]
    assert [r.ts_ms for r in good_still].count(last.ts_ms) == 1
    assert_no_value_twice(rec, ids)
    published = {(p.node_id, p.value, p.ts_ms) for p in plant.published}
    for r in rec.readings:
        if r.quality == Quality.GOOD:
            assert (f"ns={plant.ns};s={r.series.metric}", r.value, r.ts_ms) in published, r
    assert kinds(rec) == [DOWN_KIND, UP_KIND]


async def test_a_silent_link_is_found_by_the_watchdog_and_is_one_gap(plant, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with Relay(plant.port) as relay:
        url = plant.url.replace(f":{plant.port}/", f":{relay.listen_port}/")
        base = config_for(plant, watchdog_s=1.0, timeout_s=2.0)
        fields = {f: getattr(base, f) for f in base.__struct_fields__}
        source = OpcuaSource(OpcuaSourceConfig(**{**fields, "url": url}))
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.keys) == 6 and len(rec.readings) >= 30)
            await relay.stall()  # no byte either way, no FIN, no RST
            await wait_until(lambda: source.stats.links_lost == 1, within=30)
            await wait_until(lambda: source.stats.connects == 2, within=30)
            count = len(rec.readings)
            await rec.wait_for(lambda: len(rec.readings) >= count + 5 * 5)
    assert kinds(rec) == [DOWN_KIND, UP_KIND]
    assert source.stats.sessions_recovered == 1  # the server still had it
    assert_no_value_twice(rec, plant.node_ids())
    lines = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("opcua: lost (link_lost: ") for m in lines) == 1, lines
    assert sum(m.startswith("opcua: back after ") for m in lines) == 1, lines
