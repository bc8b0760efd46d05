"""`edgectl opcua cert`: the OPC UA client certificate made on the gateway, judged by a real
OPC UA server (asyncua's, `bench.opcua_plant`) that takes it only once it is in its trust list."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.config import load_config, opcua_sources
from agent.sources.opcua.source import OpcuaSource
from bench.opcua_plant import Plant
from hostio.opcuacert import default_application_uri, fingerprint
from tests.agent.sources.conftest import Recorder
from tests.firmware_bridge.conftest import running, wait_until
from tests.provisioning.conftest import Edgectl


def gateway(tmp_path: Path, url: str, server_der: bytes) -> Path:
    (tmp_path / "opcua").mkdir()
    (tmp_path / "opcua" / "server.der").write_bytes(server_der)
    nodes = ", ".join(f'{{ node_id = "ns=2;s=Line1.Tag{i}", metric = "tag{i}" }}' for i in range(2))
    (tmp_path / "agent.toml").write_text(
        '[device]\nid = "gw-opcua"\nkey_file = "keys/device.key"\n'
        '[cloud]\nurl = "https://ingest.test"\n[buffer]\npath = "buffer.db"\n'
        "[[sources]]\n"
        'type = "opcua"\nname = "plc-7"\n'
        f'url = "{url}"\n'
        'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"\n'
        'cert_file = "opcua/client.der"\nkey_file = "opcua/client.key.pem"\n'
        'trusted_server_certs = ["opcua/server.der"]\n'
        "reconnect_initial_ms = 100\nreconnect_max_s = 0.5\n"
        f"nodes = [{nodes}]\n"
    )
    return tmp_path


async def test_the_certificate_is_taken_by_a_server_that_trusts_it_and_only_then(tmp_path):
    ctl = Edgectl({})
    async with Plant(variables=2, lines=1, rate_hz=10, secure=True) as plant:
        gw = gateway(tmp_path, plant.url, plant.cert_der)
        result = ctl("opcua", "cert", "--dir", gw)
        assert result.code == 0, result.text
        cert_file, key_file = gw / "opcua/client.der", gw / "opcua/client.key.pem"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        der = cert_file.read_bytes()
        assert f"SHA-256 thumbprint: {fingerprint(der)}" in result.out
        assert "trusted certificates" in result.out
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == 2048
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert alt.get_values_for_type(x509.UniformResourceIdentifier) == [
            default_application_uri("plc-7")
        ]
        assert alt.get_values_for_type(x509.DNSName)

        (config,) = opcua_sources(load_config(gw / "agent.toml"))
        # not in the server's trust list: the server refuses the session
        source = OpcuaSource(config)
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await wait_until(lambda: source.stats.connect_failures >= 2, within=30)
        assert source.stats.connects == 0
        assert source.stats.certificate_rejected == 0  # the server refused, not we
        assert rec.readings == []
        # in it: a Basic256Sha256 SignAndEncrypt session, values flowing
        plant.trusted_clients.append(der)
        source = OpcuaSource(config)
        rec = Recorder()
        async with running(source.run(rec), "opcua"):
            await rec.wait_for(lambda: len(rec.readings) >= 6, within=30)
        assert source.stats.connects == 1


def test_an_existing_pair_is_replaced_only_with_force(tmp_path):
    ctl = Edgectl({})
    gw = gateway(tmp_path, "opc.tcp://127.0.0.1:4840", b"not used")
    assert ctl("opcua", "cert", "--dir", gw).code == 0
    cert_file, key_file = gw / "opcua/client.der", gw / "opcua/client.key.pem"
    before = cert_file.read_bytes(), key_file.read_bytes()
    refused = ctl("opcua", "cert", "--dir", gw)
    assert refused.code == 3
    assert "--force" in refused.err
    assert (cert_file.read_bytes(), key_file.read_bytes()) == before
    forced = ctl("opcua", "cert", "--dir", gw, "--source", "plc-7", "--force")
    assert forced.code == 0, forced.text
    assert cert_file.read_bytes() != before[0]
    assert key_file.read_bytes() != before[1]
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert fingerprint(cert_file.read_bytes()) in forced.out


def test_a_source_that_is_not_there_is_named(tmp_path):
    ctl = Edgectl({})
    gw = gateway(tmp_path, "opc.tcp://127.0.0.1:4840", b"not used")
    result = ctl("opcua", "cert", "--dir", gw, "--source", "plc-9")
    assert result.code == 3
    assert "no OPC UA source 'plc-9'" in result.err
    assert "plc-7" in result.err
    assert not (gw / "opcua/client.key.pem").exists()
