"""The release every command prints: the installed metadata, which matches pyproject.toml, read
only when `--version` asks for it."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from wire.version import VersionAction, release, version_line

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


def test_version_action_prints_to_stdout_and_exits_0(capsys):
    parser = argparse.ArgumentParser(prog="python -m something")
    parser.add_argument("--version", action=VersionAction, prog="edge-thing")
    parser.add_argument("--other", default="x")
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr() == (f"edge-thing {release()}\n", "")
    # Without the option it leaves no trace in the namespace.
    assert vars(parser.parse_args([])) == {"other": "x"}
    assert "--version" in parser.format_help()


def test_importing_it_reads_no_metadata():
    # A command pays for importlib.metadata only when --version is given.
    code = "import sys, wire.version; print('importlib.metadata' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
