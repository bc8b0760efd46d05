"""The storage suite's store: every test runs on SQLite and twice on PostgreSQL, as configured
(a small batch is one `ingest_batch(...)` call, migration 0002) and with that path turned off
(every batch locks, decides in Python and COPYs), so both ways of running the batch transaction
keep the same contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud.storage.store import Store
from tests.cloud.conftest import open_store


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-large-path", marks=pytest.mark.postgres),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(request, tmp_path) as s:
        yield s
