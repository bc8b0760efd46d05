"""The OPC UA client certificate maker shared by the source's first start and `edgectl opcua
cert`: its profile, and its files written by the secret-file rules."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from hostio.errors import SecretFileExistsError
from hostio.opcuacert import (
    fingerprint,
    make_client_identity,
    sha1_thumbprint,
    write_client_identity,
)


def test_the_certificate_has_the_profile_opc_ua_asks_for():
    der, key_pem = make_client_identity("urn:tierless:gw-1:plc-7", host="gw-1")
    cert = x509.load_der_x509_certificate(der)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.issuer == cert.subject  # self-signed
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:tierless:gw-1:plc-7"]
    assert alt.get_values_for_type(x509.DNSName) == ["gw-1"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.digital_signature, usage.key_encipherment, usage.data_encipherment) == (
        True,
        True,
        True,
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.public_key().public_numbers() == public.public_numbers()  # a pair


def test_an_address_as_host_is_also_an_ip_san():
    der, _ = make_client_identity("urn:x", host="192.0.2.7")
    alt = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(a) for a in alt.value.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]


def test_thumbprints_are_the_digests_of_the_der():
    der, _ = make_client_identity("urn:x", host="h")
    assert fingerprint(der) == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    sha1 = hashlib.sha1(der).digest()  # what servers display
    assert sha1_thumbprint(der) == ":".join(f"{b:02X}" for b in sha1)


def test_files_are_0600_and_never_overwritten_unless_asked(tmp_path):
    cert, key = tmp_path / "pki/client.der", tmp_path / "pki/client.key.pem"
    der, key_pem = write_client_identity(cert, key, "urn:x")
    assert (cert.read_bytes(), key.read_bytes()) == (der, key_pem)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with pytest.raises(SecretFileExistsError):
        write_client_identity(cert, key, "urn:x")
    assert (cert.read_bytes(), key.read_bytes()) == (der, key_pem)
    der2, key2 = write_client_identity(cert, key, "urn:x", replace=True)
    assert (cert.read_bytes(), key.read_bytes()) == (der2, key2)
    assert der2 != der
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
