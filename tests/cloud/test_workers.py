"""`cloud.workers` in-process: the shared listening sockets (the processes are
tests/cloud/test_multiprocess.py's)."""

from __future__ import annotations

import asyncio
import socket

from cloud.workers import bind_shared
from tests.cloud.helpers import free_port


async def test_connections_accepted_on_shared_sockets_have_nagle_off() -> None:
    """A response is written as head then body; with Nagle on, the body waits for the client's
    delayed ACK (~40 ms a request). asyncio turns Nagle off for an accepted connection only when
    the listening socket says IPPROTO_TCP, so `bind_shared` must make them that way."""
    sockets = bind_shared("127.0.0.1", free_port(), 2)
    seen: asyncio.Queue[int] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.put_nowait(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()
        await writer.wait_closed()

    servers = [await asyncio.start_server(handle, sock=s) for s in sockets]
    try:
        port = sockets[0].getsockname()[1]
        for _ in range(4):  # the kernel picks the socket; every one must do it
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(5):
                assert await seen.get() != 0
            writer.close()
            await writer.wait_closed()
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
