"""The whole store: the three interfaces plus its lifecycle, and how a URL names a backend.

Only the entry points (`cloud.server`, `cloud.cli`) and the app factory (`cloud.app`) hold a
`Store`; each part of the app is handed the narrow interface it needs: the batch endpoint a
`BatchStore`, enrolment a `RegistryStore`, the apps a `ReadStore`. Backends:
`cloud.storage.sqlite.SqliteStore` and `cloud.storage.postgres.PostgresStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

from cloud.errors import ConfigError
from cloud.storage.alerts import AlertStore
from cloud.storage.batches import BatchStore
from cloud.storage.configs import ConfigStore
from cloud.storage.health import HealthStore
from cloud.storage.production import ProductionStore
from cloud.storage.reads import ReadStore
from cloud.storage.registry import RegistryStore
from cloud.storage.retention import MaintenanceReport, Retention


class Store(
    BatchStore,
    RegistryStore,
    ReadStore,
    AlertStore,
    HealthStore,
    ProductionStore,
    ConfigStore,
    Protocol,
):
    """A receiver's state: every interface, and opening, checking and migrating the schema."""

    kind: str  # "sqlite" | "postgres"

    async def open(self) -> None:
        """Connect. StoreUnavailableError if the store cannot be reached."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless a trivial query answers."""

    async def empty(self) -> bool:
        """True when the store holds no tables at all: a brand-new database or schema."""

    async def schema_version(self) -> int:
        """The applied schema version; 0 for an empty store."""

    async def migrate(self) -> list[int]:
        """Apply every pending migration in order, each in its own transaction; the versions."""

    async def maintain(self, now_ms: int, retention: Retention) -> MaintenanceReport:
        """Partitions ahead (PostgreSQL) and retention (`cloud.storage.retention`)."""

    async def bulk_insert_readings(self, rows: Sequence[tuple[int, int, float, int]]) -> None:
        """Append raw reading rows in one transaction: the storage limit the bench compares with."""


def describe_url(url: str) -> str:
    """The URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def store_from_url(url: str, *, pool_size: int = 8) -> Store:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or `postgresql://...` to a Store."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path or path.startswith("?") or path == ":memory:":
            raise ConfigError([f"--db {url}: name a database file, e.g. sqlite:///tierless.db"])
        from cloud.storage.sqlite import SqliteStore

        return SqliteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from cloud.storage.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                ["--db postgresql://…: install tierless[postgres] (psycopg)"]
            ) from exc
        return PostgresStore(url, pool_size=pool_size)
    raise ConfigError(
        [f"--db {describe_url(url)}: expected sqlite:///path.db or postgresql://user@host/db"]
    )
