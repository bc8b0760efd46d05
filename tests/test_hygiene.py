"""The suite's own hygiene: property tests are derandomised unless asked otherwise, and
`make clean` removes everything the tools leave in the tree (what .gitignore lists)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]


def test_property_tests_run_the_derandomised_profile() -> None:
    # tests/conftest.py loads it for every test under tests/; HYPOTHESIS_PROFILE picks another
    if os.environ.get("HYPOTHESIS_PROFILE", "tierless") == "tierless":
        current = settings()  # the loaded profile's values
        assert current.derandomize
        assert current.database is None  # no saved example decides a later run


def test_the_explore_profile_searches_anew() -> None:
    probe = (
        "import tests.conftest; from hypothesis import settings; "
        "print(settings.default.derandomize)"
    )
    env = {**os.environ, "HYPOTHESIS_PROFILE": "explore"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_make_clean_removes_everything_gitignore_lists() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\nclean:\n", 1)[1].replace("$(VENV)", ".venv")
    for line in (ROOT / ".gitignore").read_text().splitlines():
        entry = line.strip().strip("/")
        if entry and not entry.startswith("#"):
            assert entry in recipe, f"make clean leaves {entry} behind"
