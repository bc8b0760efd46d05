"""Storage backends behind one interface (`cloud.storage.base.Store`): SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import urlsplit

from cloud.errors import ConfigError
from cloud.storage.base import Store


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
