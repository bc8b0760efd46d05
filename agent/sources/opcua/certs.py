"""The OPC UA client's certificate, made on the gateway, and the server certificates it trusts.

The private key never leaves the gateway: on first start, when neither `cert_file` nor
`key_file` exists, a 2048-bit RSA key is written (mode 0600, through `hostio.secretfiles`, the
device key's rule) with a self-signed certificate that carries the application URI OPC UA
requires (OPC 10000-6, 6.2.2). The operator then copies `cert_file` (public) into the server's
trust list. One of the two present without the other is a ConfigError: half a pair is a mistake
to fix, not something to overwrite. Uses `cryptography` only, so this module loads no asyncua.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import ConfigError
from hostio.errors import SecretFileError
from hostio.secretfiles import read_secret_file, write_secret_file

_MAX_CERT_BYTES = 64 * 1024
_VALID_DAYS = 10 * 365


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


def default_application_uri(name: str) -> str:
    return f"urn:tierless:{socket.gethostname()}:{name}"


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
        cert_der, key_pem = make_client_identity(application_uri)
        try:
            write_secret_file(key_path, key_pem, what="OPC UA client key")
            write_secret_file(cert_path, cert_der, what="OPC UA client certificate")
        except SecretFileError as exc:
            raise ConfigError([str(exc)]) from exc
        return ClientIdentity(cert_der, key_pem, created=True)
    try:
        key_pem = read_secret_file(key_path, what="OPC UA client key").data
    except SecretFileError as exc:
        raise ConfigError([str(exc)]) from exc
    return ClientIdentity(load_certificate_der(cert_file), key_pem, created=False)


def make_client_identity(application_uri: str, *, host: str | None = None) -> tuple[bytes, bytes]:
    """A new key (PEM) and its self-signed OPC UA application certificate (DER)."""
    host = host or socket.gethostname()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"tierless {host}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tierless"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(application_uri),
        x509.DNSName(host),
    ]
    with contextlib.suppress(ValueError):  # a host name, not an address
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.DER), key_pem


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


def fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate, as operators compare it (hex, colon-separated)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex(":").upper()
