"""The deployment tests build and install real artefacts (a wheelhouse, venvs, a container
image): minutes, not seconds. Those run only with TIERLESS_DEPLOY_TESTS=1 (the `deploy_tests`
fixture), which `make install-test` and `make container-test` set (`.ci/run` runs both after
`make test`), and `make pi-check` (on demand: docs/operations.md, *Raspberry Pi*)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
WHEELHOUSE = DIST / "wheelhouse"
ENABLED = os.environ.get("TIERLESS_DEPLOY_TESTS", "") == "1"


@pytest.fixture
def deploy_tests() -> None:
    """Skips a test that builds or installs real artefacts unless TIERLESS_DEPLOY_TESTS=1 (the
    quick checks of these files, such as the doc's commands parsing, run in `make test`)."""
    if not ENABLED:
        pytest.skip("deployment test: make install-test / container-test / pi-check")
