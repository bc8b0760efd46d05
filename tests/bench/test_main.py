"""`make bench`'s driver: a failing suite is reported and the others' figures are kept."""

import sys
import types

import pytest

from bench.__main__ import run_suites


@pytest.fixture
def suites(monkeypatch):
    def add(name, run):
        module = types.ModuleType(f"bench.{name}")
        setattr(module, "run", run)  # noqa: B010 - a module built at run time
        monkeypatch.setitem(sys.modules, f"bench.{name}", module)

    def broken(size):
        raise AssertionError("expected 1600000 readings, got 1603066")

    add("fake_first", lambda size: {"fake_first.x": 1.0})
    add("fake_broken", broken)
    add("fake_last", lambda size: {"fake_last.y": 2.0, "size_was_small": float(size == "small")})


def test_a_failing_suite_does_not_discard_the_others(suites):
    results, missing, failed = run_suites(
        ["fake_first", "fake_broken", "not_a_suite_at_all", "fake_last"], "small"
    )
    assert results == {"fake_first.x": 1.0, "fake_last.y": 2.0, "size_was_small": 1.0}
    assert missing == ["not_a_suite_at_all"]
    assert failed == {"fake_broken": "AssertionError: expected 1600000 readings, got 1603066"}
