"""A TCP proxy that injects faults between a gateway and its receiver: delays, resets, and
responses cut off after the receiver answered (the receiver has committed; the gateway never
hears it), the harshest case for exactly-once delivery.

Used by the agent's behaviour tests and by the chaos soak (`python -m soak`). Gateways sign the
URL they talk to, so a receiver behind this proxy runs with `--public-url` set to the proxy's.
Targets only loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FaultProxy:
    """A TCP proxy that delays, resets, and cuts responses off after the receiver answered.

    Runs its own event loop in a thread so the tests can stay synchronous. Per chunk from the
    agent: maybe delay, maybe reset the connection before forwarding. Per response chunk from the
    receiver: maybe drop it and close both sides (the receiver has committed; the agent never
    hears it). Counts what it did.
    """

    def __init__(
        self,
        target_port: int,
        *,
        seed: int,
        p_reset: float = 0.1,
        p_cut: float = 0.15,
        max_delay_s: float = 0.2,
    ) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.rng = random.Random(seed)
        self.p_reset, self.p_cut, self.max_delay_s = p_reset, p_cut, max_delay_s
        self.counts = {"connections": 0, "resets": 0, "cuts": 0, "delays": 0}
        self.faults = True
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._pipe(cr, cw)
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", self.port)
        self._ready.set()
        await self._stop.wait()
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def _first(self, fault: str) -> bool:
        """Each fault at least once, the first time it can happen: how often the draws hit
        depends on how many chunks a run has, and a test that saw none proved nothing (the
        10-run loop had a run with no cut)."""
        return self.counts[fault] == 0

    async def _pipe(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.close()
            return
        done = asyncio.Event()

        async def upstream() -> None:
            while data := await cr.read(65536):
                if self.faults and (self._first("delays") or self.rng.random() < 0.3):
                    self.counts["delays"] += 1
                    await asyncio.sleep(self.rng.uniform(0, self.max_delay_s))
                if self.faults and (self._first("resets") or self.rng.random() < self.p_reset):
                    self.counts["resets"] += 1
                    done.set()
                    return
                sw.write(data)
                await sw.drain()
            done.set()

        async def downstream() -> None:
            while data := await sr.read(65536):
                if self.faults and (self._first("cuts") or self.rng.random() < self.p_cut):
                    self.counts["cuts"] += 1
                    done.set()
                    return
                cw.write(data)
                await cw.drain()
            done.set()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await done.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (cw, sw):
                with contextlib.suppress(Exception):
                    w.transport.abort()  # RST rather than FIN: the harshest ending
