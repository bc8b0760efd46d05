"""Shared helpers: short paths for pty links, and task and descriptor hygiene."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def links() -> Iterator[Path]:
    """A short private directory for pty symlinks (stands in for /dev/serial/by-id)."""
    with tempfile.TemporaryDirectory(prefix="fb-") as d:
        yield Path(d)


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    """Run `coro` as a task for the block; cancel and await it after, re-raising its failure."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll `predicate` (state changed by other tasks, which signal nothing) until it holds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def _no_leftover_fds() -> Iterator[None]:
    """A test that leaks a pty or port descriptor fails."""
    before = set(os.listdir("/proc/self/fd"))
    yield
    after = set(os.listdir("/proc/self/fd"))
    leaked = []
    for fd in after - before:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(("/dev/pts", "/dev/ptmx")):
                leaked.append(target)
    assert not leaked, f"leaked tty descriptors: {leaked}"
