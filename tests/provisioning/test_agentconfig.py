"""edgectl reads agent.toml with the agent's own parser: what the agent refuses, edgectl refuses
with the same words; what edgectl writes, both read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from provisioning import agentconfig
from provisioning.errors import LocalError


def write(directory: Path, text: str) -> Path:
    path = directory / "agent.toml"
    path.write_text(text)
    return path


def test_what_edgectl_writes_both_read_back_with_paths_resolved(tmp_path):
    text = agentconfig.render(
        device_id="gw-1",
        cloud_url="https://cloud.example:8443",
        ca_file="ca.pem",
        tags=agentconfig.Tags(site="north"),
    )
    path = write(tmp_path, text)
    config = agentconfig.read(path)
    assert (config.device_id, config.cloud_url, config.allow_insecure_http) == (
        "gw-1",
        "https://cloud.example:8443",
        False,
    )
    assert config.key_file == tmp_path.resolve() / "device.key"
    assert config.ca_file == str(tmp_path.resolve() / "ca.pem")
    assert config.buffer_path == tmp_path.resolve() / "buffer.db"
    assert (config.sync_check, config.timesyncd_flag_file) == (
        "auto",
        "/run/systemd/timesync/synchronized",
    )
    assert config.agent == load_config(path)  # the agent's own reading, whole


GOOD = agentconfig.render(device_id="gw-1", cloud_url="https://cloud.example", ca_file=None)


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (GOOD.replace("[buffer]", "[buffer]\nsize = 3"), ["buffer.size: unknown key"]),
        (GOOD + '\n[clock]\nsync_check = "sundial"\n', None),  # a duplicate table: not TOML
        (
            GOOD.replace('sync_check = "auto"', 'sync_check = "sundial"'),
            ['clock.sync_check: expected one of "auto"'],
        ),
        (
            GOOD + '\n[[sources]]\ntype = "modbus"\nname = "bus"\n'
            '\n[[sources]]\ntype = "mqtt"\nname = "bus"\n',
            ["sources[0].port: missing", "sources[1].rules: missing"],
        ),
        (GOOD.replace("https://cloud.example", "http://cloud.example"), ["plain http"]),
    ],
)
def test_what_the_agent_refuses_edgectl_refuses_in_the_agents_words(tmp_path, text, problems):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as agent:
        load_config(path)
    with pytest.raises(LocalError) as ours:
        agentconfig.read(path)
    assert str(ours.value) == "; ".join(agent.value.problems)  # one line, every problem
    assert "\n" not in str(ours.value)
    for problem in problems or ["not valid TOML"]:
        assert problem in str(ours.value)
    assert ours.value.exit_code == 3


def test_edgectls_own_words_for_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(LocalError, match="no agent configuration here"):
        agentconfig.read(tmp_path / "agent.toml")
    (tmp_path / "agent.toml").write_bytes(b"\xff")
    with pytest.raises(LocalError, match="not UTF-8 text"):
        agentconfig.read(tmp_path / "agent.toml")
    with pytest.raises(LocalError, match="cannot read"):
        agentconfig.read(tmp_path)  # a directory
