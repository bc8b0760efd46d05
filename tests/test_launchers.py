"""Every console script starts through its role's launcher: with the role's extra missing it
prints one line naming the extra to install and exits EXIT_MISSING_EXTRA, never a traceback
(an agent-only install used to crash `edge-cloud` with ModuleNotFoundError: uvicorn)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from wire.extras import EXIT_MISSING_EXTRA, missing_extra_line

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
# script -> (its role's extra, a module of that extra the command imports at start)
ROLES = {
    "edge-agent": ("agent", "httpx"),
    "edge-cloud": ("cloud", "uvicorn"),
    "edgectl": ("provisioning", "httpx"),
    "tierless-mcu-emulator": ("serial", "serial"),
}


def test_every_script_has_a_role():
    assert set(SCRIPTS) == set(ROLES)


@pytest.mark.parametrize("script", sorted(ROLES))
def test_a_missing_extra_is_one_line_naming_it(script):
    extra, module = ROLES[script]
    target, _, func = SCRIPTS[script].partition(":")
    # None in sys.modules makes `import module` raise ModuleNotFoundError, as if not installed.
    code = (
        f"import sys; sys.modules[{module!r}] = None; "
        f"from {target} import {func}; sys.exit({func}())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == EXIT_MISSING_EXTRA, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f'{script}: the "{extra}" extra is not installed here (no module named {module!r}):'
        f" pip install 'tierless[{extra}]'\n"
    )


def test_the_line_names_the_module_and_the_extra():
    exc = ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn")
    assert missing_extra_line("edge-cloud", "cloud", exc) == (
        "edge-cloud: the \"cloud\" extra is not installed here (no module named 'uvicorn'):"
        " pip install 'tierless[cloud]'"
    )
