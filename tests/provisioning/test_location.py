"""One place for a gateway's configuration (issue 14): `edgectl enroll --dir /var/lib/edge-agent`
writes `agent.toml` there beside the key and the buffer, with paths relative to the file; the
example, the systemd unit and the docs name that same file and directory, and nothing names
another."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from agent.cli import DEFAULT_CONFIG
from provisioning import agentconfig
from provisioning.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_DIR = Path("/var/lib/edge-agent")
CONFIG = GATEWAY_DIR / agentconfig.CONFIG_NAME
UNIT = ROOT / "deploy" / "edge-agent.service"
EXAMPLE = ROOT / "examples" / "agent.toml"
GATEWAY_DOCS = ("operations.md", "provisioning.md", "configuration.md", "install.md")


def _unit() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_runs_the_config_enrolment_writes():
    unit = _unit()
    assert unit["ExecStartPre"] == [f"/opt/tierless/bin/edge-agent check-config {CONFIG}"]
    assert unit["ExecStart"] == [f"/opt/tierless/bin/edge-agent run --config {CONFIG}"]
    assert unit["StateDirectory"] == [GATEWAY_DIR.name]
    assert unit["ReadWritePaths"] == [str(GATEWAY_DIR)]
    assert "ConfigurationDirectory" not in unit  # no second place for a config


def test_no_shipped_file_names_another_place():
    shipped = [UNIT, EXAMPLE, ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in shipped:
        assert "/etc/edge-agent" not in path.read_text(encoding="utf-8"), path


def test_the_docs_name_the_one_directory_and_file():
    for name in GATEWAY_DOCS:
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        dirs = set(re.findall(r"--dir\s+(/\S+?)[`\s]", text))
        configs = set(re.findall(r"(?:--config|check-config)\s+(/\S+?)[`\s]", text))
        assert dirs <= {str(GATEWAY_DIR)}, (name, dirs)
        assert configs <= {str(CONFIG)}, (name, configs)
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert f"--dir {GATEWAY_DIR}" in operations
    assert str(CONFIG) in operations


def test_the_example_uses_the_names_enrolment_writes():
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert raw["device"]["key_file"] == agentconfig.KEY_NAME
    assert raw["buffer"]["path"] == agentconfig.BUFFER_NAME
    # the CA line is commented out (enrolment copies a CA only when given one), with its name
    assert "ca_file" not in raw["cloud"]
    assert f'#ca_file = "{agentconfig.CA_NAME}"' in EXAMPLE.read_text(encoding="utf-8")
    # no live source, least of all the one that invents readings
    assert "sources" not in raw


def test_an_enrolled_directory_stays_right_after_a_move(tmp_path):
    first = tmp_path / "edge-agent"
    first.mkdir()
    text = agentconfig.render(
        device_id="gw-0001", cloud_url="https://ingest.example.com", ca_file=None
    )
    (first / agentconfig.CONFIG_NAME).write_text(text, encoding="utf-8")
    before = agentconfig.read(first / agentconfig.CONFIG_NAME)
    assert before.key_file == first.resolve() / agentconfig.KEY_NAME
    moved = first.rename(tmp_path / "restored")
    after = agentconfig.read(moved / agentconfig.CONFIG_NAME)
    assert after.key_file == moved.resolve() / agentconfig.KEY_NAME
    assert after.buffer_path == moved.resolve() / agentconfig.BUFFER_NAME


def test_every_gateway_command_defaults_to_the_one_directory():
    assert agentconfig.GATEWAY_DIR == GATEWAY_DIR
    assert Path(DEFAULT_CONFIG) == CONFIG  # edge-agent's --config default
    for argv in (["enroll"], ["rotate-key"], ["doctor"], ["opcua", "cert"]):
        assert _parser().parse_args(argv).dir == GATEWAY_DIR, argv
