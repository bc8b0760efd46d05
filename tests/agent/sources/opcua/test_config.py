"""The `type = "opcua"` table: parsed through the agent's own config loader, every problem with
its key path; and loading it costs no asyncua import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.sources.opcua.config import OpcuaSourceConfig

HEAD = """
[device]
id = "gw-1"
key_file = "device.key"

[cloud]
url = "https://cloud.example"

[buffer]
path = "buffer.db"
"""


def parse(source: str, tmp_path: Path):
    text = HEAD + textwrap.dedent(source)
    return parse_config(text, name="agent.toml", base_dir=tmp_path)


def problems(source: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(source, tmp_path)
    return list(info.value.problems)


def test_a_loopback_source_without_security_is_accepted(tmp_path):
    config = parse(
        """
        [[sources]]
        type = "opcua"
        url = "opc.tcp://127.0.0.1:4840"
        nodes = [
          { node_id = "ns=2;s=Line1.Flow", metric = "flow" },
          { browse_path = "2:Plant/2:Line1/2:Temp", metric = "temp", sampling_interval_ms = 500 },
        ]
        """,
        tmp_path,
    )
    (source,) = config.sources
    assert isinstance(source, OpcuaSourceConfig)
    assert source.mode == "subscribe"
    assert source.nodes[1].browse_path == "2:Plant/2:Line1/2:Temp"
    assert source.session_timeout_ms == 60_000  # what the server keeps a dropped session for
    assert source.on_link_lost == "recover_session"


def test_a_session_timeout_below_a_second_is_refused(tmp_path):
    found = problems(
        """
        [[sources]]
        type = "opcua"
        session_timeout_ms = 500
        nodes = [{ node_id = "ns=2;s=A", metric = "a" }]
        """,
        tmp_path,
    )
    assert any("session_timeout_ms" in p for p in found), found


def test_security_none_to_another_host_is_refused_unless_allowed(tmp_path):
    table = """
        [[sources]]
        type = "opcua"
        url = "opc.tcp://plc-7.plant:4840"
        {extra}
        nodes = [{{ node_id = "ns=2;s=A", metric = "a" }}]
        """
    found = problems(table.format(extra=""), tmp_path)
    assert len(found) == 1
    assert found[0].startswith("agent.toml: sources[0].security_policy: None to 'plc-7.plant'")
    config = parse(table.format(extra='insecure = "allow"'), tmp_path)
    assert config.sources[0].insecure == "allow"


def test_security_needs_a_client_certificate_and_a_trusted_server(tmp_path):
    found = problems(
        """
        [[sources]]
        type = "opcua"
        url = "opc.tcp://plc-7.plant:4840"
        security_policy = "Basic256Sha256"
        nodes = [{ node_id = "ns=2;s=A", metric = "a" }]
        """,
        tmp_path,
    )
    assert [p.split(":")[1].strip() for p in found] == [
        "sources[0].cert_file",
        "sources[0].key_file",
        "sources[0].trusted_server_certs",
    ]


def test_paths_are_relative_to_the_config_file(tmp_path):
    config = parse(
        """
        [[sources]]
        type = "opcua"
        url = "opc.tcp://plc-7.plant:4840"
        security_policy = "Aes128_Sha256_RsaOaep"
        security_mode = "Sign"
        cert_file = "opcua/client.der"
        key_file = "opcua/client.key"
        trusted_server_certs = ["opcua/plc-7.der"]
        username = "reader"
        password_file = "opcua/password"
        nodes = [{ node_id = "ns=2;s=A", metric = "a" }]
        """,
        tmp_path,
    )
    source = config.sources[0]
    assert source.cert_file == str(tmp_path / "opcua/client.der")
    assert source.key_file == str(tmp_path / "opcua/client.key")
    assert source.trusted_server_certs == [str(tmp_path / "opcua/plc-7.der")]
    assert source.password_file == str(tmp_path / "opcua/password")


def test_every_node_problem_is_reported_with_its_path(tmp_path):
    found = problems(
        """
        [[sources]]
        type = "opcua"
        url = "opc.tcp://127.0.0.1:4840"
        password_file = "pw"
        nodes = [
          { metric = "neither" },
          { node_id = "ns=2;s=A", browse_path = "2:A", metric = "both" },
          { node_id = "Line1.Flow", metric = "bad_id" },
          { browse_path = "Plant/Line1", metric = "bad_path" },
          { node_id = "ns=2;s=B", metric = "bad_path" },
        ]
        """,
        tmp_path,
    )
    assert [p.removeprefix("agent.toml: ").split(":")[0] for p in found] == [
        "sources[0].password_file",
        "sources[0].nodes[0]",
        "sources[0].nodes[1]",
        "sources[0].nodes[2].node_id",
        "sources[0].nodes[3].browse_path",
        "sources[0].nodes[4].metric",
    ]


def test_unknown_keys_and_wrong_urls_are_refused(tmp_path):
    found = problems(
        """
        [[sources]]
        type = "opcua"
        url = "http://127.0.0.1:4840"
        publish_interval_ms = 100
        nodes = [{ node_id = "ns=2;s=A", metric = "a" }]
        """,
        tmp_path,
    )
    assert any("publish_interval_ms" in p for p in found), found


def test_loading_an_opcua_config_does_not_import_asyncua(tmp_path):
    # asyncua costs about half a second of start time: only build_source may load it
    (tmp_path / "agent.toml").write_text(
        HEAD + '[[sources]]\ntype = "opcua"\nnodes = [{ node_id = "ns=2;s=A", metric = "a" }]\n'
    )
    code = (
        "import sys; from agent.config import load_config; import agent.runtime; "
        f"load_config({str(tmp_path / 'agent.toml')!r}); "
        "print('asyncua' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
