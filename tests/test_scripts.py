"""Every command the package installs answers `--version` with the installed release."""

from __future__ import annotations

import subprocess
import sysconfig
import tomllib
from pathlib import Path

import pytest

from wire.version import release

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(
    tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
)


def test_every_cli_is_checked():
    # A new command joins SCRIPTS by itself; this pins that none of the known four was dropped.
    assert {"edge-agent", "edge-cloud", "edgectl", "tierless-mcu-emulator"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_version(script):
    path = Path(sysconfig.get_path("scripts")) / script
    done = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{script} {release()}\n", "")
