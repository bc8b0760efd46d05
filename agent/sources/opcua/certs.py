"""The OPC UA client's certificate, made on the gateway, and the server certificates it trusts.

The private key never leaves the gateway: on first start, when neither `cert_file` nor
`key_file` exists, the pair is made by `hostio.opcuacert` (the code `edgectl opcua cert` uses
too): a 2048-bit RSA key written mode 0600 and a self-signed certificate that carries the
application URI OPC UA requires (OPC 10000-6, 6.2.2). The operator then copies `cert_file`
(public) into the server's trust list. One of the two present without the other is a
ConfigError: half a pair is a mistake to fix, not something to overwrite. Uses `cryptography`
only, so this module loads no asyncua.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.errors import ConfigError
from hostio.errors import SecretFileError
from hostio.opcuacert import (
    default_application_uri,
    fingerprint,
    make_client_identity,
    write_client_identity,
)
from hostio.secretfiles import read_secret_file

# the source and its tests take these from here
__all__ = [
    "ClientIdentity",
    "default_application_uri",
    "ensure_client_identity",
    "fingerprint",
    "load_certificate_der",
    "make_client_identity",
]

_MAX_CERT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    certificate_der: bytes
    key_pem: bytes
    created: bool  # made on this start

    def key_der(self) -> bytes:
        """The key as PKCS#8 DER (what asyncua takes as bytes)."""
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        return key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def ensure_client_identity(cert_file: str, key_file: str, application_uri: str) -> ClientIdentity:
    """The client certificate (DER) and key (PEM), made first if neither file exists."""
    cert_path, key_path = Path(cert_file), Path(key_file)
    have_cert, have_key = cert_path.exists(), key_path.exists()
    if have_cert != have_key:
        missing = key_file if have_cert else cert_file
        raise ConfigError(
            [
                f"{missing}: missing, but its pair exists; restore it, "
                "or remove both to make a new pair"
            ]
        )
    if not have_cert:
        try:
            cert_der, key_pem = write_client_identity(cert_path, key_path, application_uri)
        except SecretFileError as exc:
            raise ConfigError([str(exc)]) from exc
        return ClientIdentity(cert_der, key_pem, created=True)
    try:
        key_pem = read_secret_file(key_path, what="OPC UA client key").data
    except SecretFileError as exc:
        raise ConfigError([str(exc)]) from exc
    return ClientIdentity(load_certificate_der(cert_file), key_pem, created=False)


def load_certificate_der(path: str) -> bytes:
    """A certificate file (DER or PEM) as DER; ConfigError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_CERT_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read certificate: {exc.strerror or exc}"]) from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError([f"{path}: not a DER or PEM certificate ({exc})"]) from exc
    return cert.public_bytes(serialization.Encoding.DER)
