"""Fixtures for the receiver's tests: one store suite over both backends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette

from cloud.app import create_app
from cloud.apps.intensity import PlantConfig
from cloud.bearer import BearerCheck
from cloud.config import Config, Limits
from cloud.receiver.metrics import Metrics
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, Frozen, Gateway, serve_app


@contextlib.asynccontextmanager
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, open store of kind `request.param`: "sqlite" in a temp file, or PostgreSQL
    in a fresh schema: "postgres" as configured by default, "postgres-large-path" with the
    one-statement small-batch path turned off, so every batch takes the COPY path."""
    s: Store
    if request.param == "sqlite":
        from cloud.storage.sqlite import SqliteStore

        s = SqliteStore(str(tmp_path / "cloud.db"))
    else:
        from cloud.storage.postgres import PostgresStore
        from cloud.storage.postgres_batches import SMALL_BATCH_MAX

        large_only = request.param == "postgres-large-path"
        s = PostgresStore(
            request.getfixturevalue("pg_dsn"),
            pool_size=4,
            small_batch_max=-1 if large_only else SMALL_BATCH_MAX,
        )
    await s.open()
    try:
        await s.migrate()
        yield s
    finally:
        await s.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, open store: SQLite in a temp file, or PostgreSQL in a fresh schema."""
    async with open_store(request, tmp_path) as s:
        yield s


class FakeClock:
    """Wall clock in ms and monotonic seconds that a test moves by hand."""

    def __init__(self, ms: int = START_MS) -> None:
        self.ms = ms
        self.mono = 1000.0

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.mono

    def advance(self, ms: int) -> None:
        self.ms += ms
        self.mono += ms / 1000


@dataclass
class Receiver:
    """A receiver on a real loopback port, its store, clock and an HTTP client."""

    base_url: str
    store: Store
    clock: FakeClock
    client: httpx.AsyncClient
    app: Starlette

    @property
    def metrics(self) -> Metrics:
        return self.app.state.ctx.metrics  # type: ignore[no-any-return]

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(
            method, path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs
        )

    async def token(self, device_id: str, ttl_s: int = 600) -> str:
        r = await self.admin(
            "POST", "/v1/admin/tokens", json={"device_id": device_id, "ttl_s": ttl_s}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    async def enrolled(self, device_id: str) -> Gateway:
        gw = Gateway(device_id, base_url=self.base_url)
        headers, body = gw.enroll_request(await self.token(device_id))
        r = await self.client.post("/v1/enroll", content=body, headers=headers)
        assert r.status_code == 201, r.text
        return gw

    async def send(self, gw: Gateway, frozen: Frozen, **kwargs: Any) -> httpx.Response:
        headers, body = gw.batch_request(frozen, **kwargs)
        return await self.client.post("/v1/batches", content=body, headers=headers)


ADMIN_TOKEN = "admin-token-for-tests"
READ_TOKEN = "read-token-for-tests"
CONFIG_KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)  # signs pushed configs


@contextlib.asynccontextmanager
async def running_receiver(
    store: Store, limits: Limits | None = None, plant: PlantConfig | None = None
) -> AsyncIterator[Receiver]:
    clock = FakeClock()
    apps: list[Starlette] = []

    def make(url: str) -> Starlette:
        config = Config(
            url,
            admin=BearerCheck(ADMIN_TOKEN),
            read=BearerCheck(READ_TOKEN),
            limits=limits or Limits(device_burst=10_000),
            config_key=CONFIG_KEY,
        )
        apps.append(
            create_app(config, store, now_ms=clock.now_ms, monotonic=clock.monotonic, plant=plant)
        )
        return apps[0]

    async with serve_app(make) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield Receiver(base_url, store, clock, client, apps[0])


@pytest.fixture
async def receiver(store: Store) -> AsyncIterator[Receiver]:
    async with running_receiver(store) as r:
        yield r
