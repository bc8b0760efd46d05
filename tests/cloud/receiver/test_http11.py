"""The guarded HTTP/1.1 protocol on a real uvicorn server on loopback, with raw sockets.

Every loop here is bounded in count and time and talks only to 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud.config import ConnectionLimits
from cloud.server import http_options
from tests.cloud.helpers import serve_app

ATTACKER = "127.0.0.7"  # loopback is 127.0.0.0/8: another client address on this machine
FAST = ConnectionLimits(head_timeout_s=0.5, keep_alive_s=3, max_waiting_per_address=8)
HEAD = b"GET /ok HTTP/1.1\r\nhost: x\r\n"


class App:
    """`/ok` answers at once; `/slow` waits until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.two_started = asyncio.Event()

    def __call__(self, _base_url: str) -> Starlette:
        async def ok(request: Request) -> Response:
            await request.body()
            return Response(b'{"ok":true}', media_type="application/json")

        async def slow(request: Request) -> Response:
            self.started += 1
            if self.started == 2:
                self.two_started.set()
            await self.release.wait()
            return Response(b'{"ok":true}', media_type="application/json")

        return Starlette(routes=[Route("/ok", ok, methods=["GET", "POST"]), Route("/slow", slow)])


@contextlib.asynccontextmanager
async def server(
    limits: ConnectionLimits = FAST, *, max_requests: int = 50, app: App | None = None
) -> AsyncIterator[tuple[str, int]]:
    async with serve_app(
        app or App(), **http_options(limits, max_requests=max_requests)
    ) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        yield host, int(port)


async def connect(
    addr: tuple[str, int], source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*addr, local_addr=(source, 0))


async def read_all(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything until the server closes; fails if it has not closed within `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        with contextlib.suppress(ConnectionResetError):
            return await reader.read(-1)
        return b""


def parse(raw: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


async def test_a_head_that_never_ends_gets_408_and_the_connection_closes() -> None:
    async with server() as addr:
        reader, writer = await connect(addr)
        started = time.monotonic()
        writer.write(HEAD)  # and never the blank line
        raw = await read_all(reader, timeout_s=3)
        assert time.monotonic() - started < 2
        status, headers, body = parse(raw)
        assert (status, headers["connection"], headers["content-type"]) == (
            408,
            "close",
            "application/json",
        )
        assert body == {"error": "timeout", "message": "request head not received in time"}
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout() -> None:
    async with server() as addr:
        reader, writer = await connect(addr, ATTACKER)
        raw = await read_all(reader, timeout_s=3)
        assert parse(raw)[0] == 408
        writer.close()


async def test_trickling_bytes_does_not_extend_the_deadline() -> None:
    async with server() as addr:
        reader, writer = await connect(addr, ATTACKER)
        started = time.monotonic()
        closed = asyncio.ensure_future(read_all(reader, timeout_s=3))
        for _ in range(30):  # at most 3 s of one header byte every 0.1 s
            if closed.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(b"GET / HTTP/1.1\r\nx-pad: " if _ == 0 else b"a")
            await asyncio.sleep(0.1)
        assert parse(await closed)[0] == 408
        assert time.monotonic() - started < 2.5  # the deadline (0.5 s), not the trickle (3 s)
        writer.close()


async def test_keep_alive_outlasts_the_head_timeout_but_a_late_head_does_not() -> None:
    async with server() as addr:
        reader, writer = await connect(addr)
        request = HEAD + b"\r\n"
        writer.write(request)
        await reader.readuntil(b'{"ok":true}')
        await asyncio.sleep(FAST.head_timeout_s * 2)  # idle, within keep-alive: still open
        writer.write(request)
        await reader.readuntil(b'{"ok":true}')
        writer.write(HEAD)  # the next head starts, and stalls
        raw = await read_all(reader, timeout_s=3)
        assert parse(raw)[0] == 408
        writer.close()


async def test_an_idle_keep_alive_connection_closes_after_keep_alive() -> None:
    limits = ConnectionLimits(head_timeout_s=0.5, keep_alive_s=1)
    async with server(limits) as addr:
        reader, writer = await connect(addr)
        writer.write(HEAD + b"\r\n")
        await reader.readuntil(b'{"ok":true}')
        assert await read_all(reader, timeout_s=3) == b""
        writer.close()


def big_head(size: int, start: bytes = HEAD) -> bytes:
    """A request head of exactly `size` bytes, blank line included."""
    pad = b"x" * (size - len(start) - len(b"x-pad: \r\n\r\n"))
    return start + b"x-pad: " + pad + b"\r\n\r\n"


async def test_a_head_over_16_kib_in_one_write_gets_431() -> None:
    async with server(ConnectionLimits()) as addr:
        reader, writer = await connect(addr, ATTACKER)
        writer.write(big_head(64 * 1024))
        status, headers, body = parse(await read_all(reader, timeout_s=3))
        assert (status, headers["connection"]) == (431, "close")
        assert body == {"error": "too_large", "message": "request head larger than 16384 bytes"}
        writer.close()


async def test_a_head_over_16_kib_in_pieces_gets_431() -> None:
    async with server(ConnectionLimits()) as addr:
        reader, writer = await connect(addr, ATTACKER)
        head = big_head(17 * 1024)
        for i in range(0, len(head), 1024):
            with contextlib.suppress(ConnectionError):
                writer.write(head[i : i + 1024])
                await writer.drain()
        assert parse(await read_all(reader, timeout_s=3))[0] == 431
        writer.close()


async def test_a_head_of_exactly_16_kib_with_a_body_is_served_in_one_write_and_in_pieces() -> None:
    start = b"POST /ok HTTP/1.1\r\nhost: x\r\ncontent-length: 40000\r\n"
    request = big_head(16 * 1024, start) + b"b" * 40000
    async with server(ConnectionLimits()) as addr:
        for piece in (len(request), 7):
            reader, writer = await connect(addr)
            for i in range(0, len(request), piece):
                writer.write(request[i : i + piece])
            await writer.drain()
            async with asyncio.timeout(5):
                await reader.readuntil(b'{"ok":true}')
            writer.close()


async def test_a_malformed_request_gets_the_json_400() -> None:
    async with server() as addr:
        reader, writer = await connect(addr)
        writer.write(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        status, headers, body = parse(await read_all(reader, timeout_s=3))
        assert (status, headers["connection"]) == (400, "close")
        assert body == {"error": "bad_request", "message": "malformed HTTP request"}
        writer.close()


async def test_idle_connections_do_not_count_against_the_request_limit() -> None:
    limits = ConnectionLimits(head_timeout_s=5, max_waiting_per_address=100)
    async with server(limits, max_requests=4) as addr:
        idle = [await connect(addr, ATTACKER) for _ in range(20)]
        for _, writer in idle:
            writer.write(HEAD)
        async with httpx.AsyncClient(base_url=f"http://{addr[0]}:{addr[1]}") as c:
            r = await c.get("/ok")
        assert r.status_code == 200
        for _, writer in idle:
            writer.close()


async def test_over_the_request_limit_the_answer_is_the_json_503_with_retry_after() -> None:
    app = App()
    async with server(FAST, max_requests=2, app=app) as addr:
        base = f"http://{addr[0]}:{addr[1]}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            slow = [asyncio.ensure_future(c.get("/slow")) for _ in range(2)]
            async with asyncio.timeout(5):
                await app.two_started.wait()
            r = await c.get("/ok")
            assert (r.status_code, r.json()) == (503, {"error": "unavailable"})
            assert r.headers["retry-after"] == "1"
            assert r.headers["cache-control"] == "no-store"
            app.release.set()
            assert [(await s).status_code for s in slow] == [200, 200]
            assert (await c.get("/ok")).status_code == 200


async def test_one_address_cannot_take_all_the_request_slots() -> None:
    app = App()
    limits = ConnectionLimits(head_timeout_s=5, max_requests_per_address=2)
    async with server(limits, max_requests=50, app=app) as addr:
        conns = [await connect(addr, ATTACKER) for _ in range(3)]
        for _, writer in conns:
            writer.write(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        status, _, _ = parse(await read_all(conns[2][0], timeout_s=3))
        assert status == 503  # the third from that address
        async with httpx.AsyncClient(base_url=f"http://{addr[0]}:{addr[1]}") as c:
            assert (await c.get("/ok")).status_code == 200  # another address is served
        app.release.set()
        for _, writer in conns:
            writer.close()


async def test_one_address_over_its_waiting_cap_loses_its_oldest_idle_connection() -> None:
    async with server(ConnectionLimits(head_timeout_s=5, max_waiting_per_address=3)) as addr:
        conns = [await connect(addr, ATTACKER) for _ in range(3)]
        late = await connect(addr, ATTACKER)
        assert await read_all(conns[0][0], timeout_s=3) == b""  # the oldest is closed ...
        late[1].write(HEAD + b"\r\n")  # ... and the newest is served
        async with asyncio.timeout(3):
            await late[0].readuntil(b'{"ok":true}')
        for _, writer in [*conns, late]:
            writer.close()
