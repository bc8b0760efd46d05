"""The buffer's one thread: every SQLite call runs there, in order, off the event loop.

One writer by construction: the executor has a single thread, so calls never interleave and the
sqlite3 connection is only ever used from that thread. A commit of 10,000 readings or the cut of
a 20,000-reading batch takes milliseconds to tens of milliseconds; on the loop it would stall the
sources and the metrics endpoint for that long.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from agent.buffer import Buffer

P = ParamSpec("P")
T = TypeVar("T")


class BufferWorker:
    def __init__(self, buffer: Buffer) -> None:
        self.buffer = buffer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Finish queued calls, then close the file (checkpointing the WAL)."""
        self._executor.shutdown(wait=True)
        self.buffer.close()
