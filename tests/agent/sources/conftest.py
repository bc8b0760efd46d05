"""A sink that records what sources add, and the serial helpers of tests/firmware_bridge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from tests.firmware_bridge.conftest import _no_leftover_fds, links  # noqa: F401 - fixtures
from wire.models import Event, Reading, SeriesKey


class Recorder:
    """The agent's `Sink`, in memory: every `add` recorded as a `Reading`. `committed()` returns
    at once, or, with `commits=False`, waits until the test sets `commits_allowed`."""

    def __init__(self, *, commits: bool = True) -> None:
        self.keys: dict[SeriesKey, int] = {}
        self._by_id: dict[int, SeriesKey] = {}
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.readings_before: list[int] = []  # per event: how many readings came before it
        self.changed = asyncio.Event()
        self.commits_allowed = asyncio.Event()
        if commits:
            self.commits_allowed.set()

    def series_id(self, key: SeriesKey) -> int:
        sid = self.keys.setdefault(key, len(self.keys) + 1)
        self._by_id[sid] = key
        return sid

    def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None) -> None:
        assert ts_ms is not None, "serial sources stamp their own readings"
        self.readings.append(Reading(self._by_id[series_id], ts_ms, value, quality))
        self.changed.set()

    def add_event(self, event: Event) -> None:
        self.events.append(event)
        self.readings_before.append(len(self.readings))
        self.changed.set()

    def room(self) -> int:
        return 1_000_000

    def last_value(self, series_id: int) -> float | None:
        return None

    async def committed(self) -> None:
        await self.commits_allowed.wait()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self.changed.wait()


@pytest.fixture
def sink() -> Recorder:
    return Recorder()
