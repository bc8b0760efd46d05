"""The release every command prints: the installed metadata, which matches pyproject.toml."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from wire.version import release, version_line

ROOT = Path(__file__).resolve().parents[2]


def test_release_is_the_version_in_pyproject():
    # A stale install (pyproject bumped, not reinstalled) fails here, not in a user's bug report.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert release() == project["version"] == metadata.version("tierless")


def test_version_line_names_the_command():
    assert version_line("edgectl") == f"edgectl {release()}"


def test_an_uninstalled_tree_says_unknown(monkeypatch):
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert release() == "unknown"
    assert version_line("edge-agent") == "edge-agent unknown"
