"""Fixtures for the agent tests: real receiver and agent processes (see tests/agent/e2e.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.e2e import AgentProc, Receiver, receiver_available


@pytest.fixture
def receiver(tmp_path) -> Iterator[Receiver]:
    if not receiver_available():
        pytest.skip("edge-cloud is not installed")
    r = Receiver(tmp_path / "cloud")
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def agents() -> Iterator[list[AgentProc]]:
    made: list[AgentProc] = []
    try:
        yield made
    finally:
        for a in made:
            if a.proc is not None:
                a.kill9()
