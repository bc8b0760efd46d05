"""Versioned schema migrations, one SQL file per version and backend.

Files are named `<backend>_<NNNN>_<name>.sql`; version NNNN is applied once, in order, in its own
transaction, and recorded in `schema_version`. Objects are created unqualified, in the current
schema (PostgreSQL `search_path`), so one database can hold several receivers' schemas.
Never edit a released file: add the next version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"(?P<backend>sqlite|postgres)_(?P<version>\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(backend: str) -> list[Migration]:
    """The migrations of one backend ("sqlite" or "postgres"), oldest first."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.fullmatch(entry.name)
        if match and match["backend"] == backend:
            found.append(
                Migration(int(match["version"]), entry.name, entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    return found


def latest_version(backend: str) -> int:
    ms = migrations(backend)
    return ms[-1].version if ms else 0
