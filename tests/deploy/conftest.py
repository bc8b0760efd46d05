"""The deployment tests build and install real artefacts (a wheelhouse, venvs, a container
image): minutes, not seconds. They run only with TIERLESS_DEPLOY_TESTS=1, which `make
install-test` and `make container-test` set (`.ci/run` runs both after `make test`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
WHEELHOUSE = DIST / "wheelhouse"
ENABLED = os.environ.get("TIERLESS_DEPLOY_TESTS", "") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="deployment test: make install-test / make container-test")
    for item in items:
        if Path(str(item.path)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)
