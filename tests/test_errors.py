"""One `ConfigError` shape in every package: a list of problems, one line each, and `str()` the
lines joined; the agent's narrower config errors keep it."""

from __future__ import annotations

import pytest

from agent.errors import ConfigError as AgentConfigError
from agent.errors import KeyFileError
from agent.sources.mqtt.mapping import RuleError
from cloud.errors import ConfigError as CloudConfigError
from firmware_bridge.errors import ConfigError as BridgeConfigError

PROBLEMS = ["agent.toml: cloud.url: not a URL", "agent.toml: buffer: missing (required)"]


@pytest.mark.parametrize("cls", [AgentConfigError, CloudConfigError, BridgeConfigError])
def test_every_config_error_lists_its_problems_one_per_line(cls):
    exc = cls(PROBLEMS)
    assert exc.problems == tuple(PROBLEMS)
    assert str(exc) == "agent.toml: cloud.url: not a URL\nagent.toml: buffer: missing (required)"
    assert cls(tuple(PROBLEMS)).problems == tuple(PROBLEMS)


def test_a_key_file_error_is_one_problem():
    exc = KeyFileError("key file 'device.key' is not a regular file")
    assert isinstance(exc, AgentConfigError)
    assert exc.problems == ("key file 'device.key' is not a regular file",)


def test_a_rule_error_is_one_problem_naming_the_rules_key():
    exc = RuleError("values[0].scale", "must be a finite number")
    assert isinstance(exc, AgentConfigError)
    assert exc.field == "values[0].scale"
    assert exc.problems == ("values[0].scale: must be a finite number",)
