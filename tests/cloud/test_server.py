"""`edge-cloud serve` as a process, under hostile clients: idle sockets cannot lock gateways out.

The attacker's sockets are bounded in number and time and bound to 127.0.0.7, another loopback
address, so per-address accounting sees two clients on one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from pathlib import Path

import httpx
import pytest

from cloud.config import ConnectionLimits
from cloud.errors import ConfigError
from cloud.server import fit_connections, raise_descriptor_limit
from tests.cloud.helpers import Gateway, free_port, spawn_receiver

ATTACKER = "127.0.0.7"
IDLE_SOCKETS = 1000
PARTIAL_HEAD = b"POST /v1/batches HTTP/1.1\r\nhost: x\r\n"


async def _idle(port: int, writers: list[asyncio.StreamWriter]) -> asyncio.StreamReader | None:
    """One attacker socket that sends part of a head and nothing more (None: refused)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    except OSError:
        return None
    writers.append(writer)
    with contextlib.suppress(OSError):  # the receiver may have closed it already
        writer.write(PARTIAL_HEAD)
        await writer.drain()
    return reader


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    with contextlib.suppress(ConnectionError):
        await reader.read(-1)
    return True


async def test_a_thousand_idle_sockets_do_not_stop_an_enrolled_gateway(tmp_path: Path) -> None:
    port = free_port()
    args = ["serve", "--db", f"sqlite:///{tmp_path}/c.db", "--port", str(port)]
    async with (
        spawn_receiver([*args, "--token-dir", str(tmp_path)], {"TIERLESS_LOG_LEVEL": "warning"}),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c,
    ):
        admin = (tmp_path / "tierless-admin.token").read_text().strip()
        r = await c.post(
            "/v1/admin/tokens",
            json={"device_id": "gw-1", "ttl_s": 60},
            headers={"authorization": f"Bearer {admin}"},
        )
        gw = Gateway("gw-1", base_url=f"http://127.0.0.1:{port}")
        headers, body = gw.enroll_request(r.json()["token"])
        assert (await c.post("/v1/enroll", content=body, headers=headers)).status_code == 201

        readers: list[asyncio.StreamReader] = []
        writers: list[asyncio.StreamWriter] = []
        try:
            await _attack_and_upload(port, gw, readers, writers)
        finally:
            for writer in writers:
                writer.close()


async def _attack_and_upload(
    port: int,
    gw: Gateway,
    readers: list[asyncio.StreamReader],
    writers: list[asyncio.StreamWriter],
) -> None:
    async with asyncio.timeout(30):
        for _ in range(IDLE_SOCKETS // 100):
            opened = await asyncio.gather(*(_idle(port, writers) for _ in range(100)))
            readers.extend(r for r in opened if r is not None)
    assert len(readers) == IDLE_SOCKETS  # every one was accepted: none refused outright

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as fresh:
        headers, body = gw.batch_request(gw.next_batch())
        ack = await fresh.post("/v1/batches", content=body, headers=headers)
    assert (ack.status_code, ack.json()["status"]) == (200, "stored")
    assert time.monotonic() - started < 2

    # ... and the attacker's sockets are all closed within the head timeout (5 s) or sooner
    async with asyncio.timeout(ConnectionLimits().head_timeout_s + 5):
        closed = await asyncio.gather(*(_closed_by_server(r) for r in readers))
    assert all(closed)


def test_the_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft == hard and hard != resource.RLIM_INFINITY and hard > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard - 1, hard))
        now = raise_descriptor_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == now
        assert now == hard or hard == resource.RLIM_INFINITY
        assert raise_descriptor_limit() == now  # already there: nothing changes
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_waiting_connections_are_fitted_into_the_descriptor_limit() -> None:
    limits = ConnectionLimits(max_waiting=10_000)
    assert fit_connections(limits, descriptors=100_000, max_requests=200, pool_size=8) == limits
    fitted = fit_connections(limits, descriptors=1024, max_requests=200, pool_size=8)
    assert fitted.max_waiting == 1024 - 64 - 200 - 8
    with pytest.raises(ConfigError, match="open-file limit"):
        fit_connections(limits, descriptors=256, max_requests=200, pool_size=8)
