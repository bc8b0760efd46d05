"""The OPC UA client certificate of a gateway: made once, on the gateway, by one piece of code.

Both the `opcua` source (on first start, when neither file exists) and `edgectl opcua cert` make
the pair here, so the two cannot drift: a 2048-bit RSA key (PKCS#8 PEM) and a self-signed X.509
v3 certificate (DER) signed with SHA-256, whose subjectAltName carries the application URI OPC
UA requires (OPC 10000-6, 6.2.2) and the host's DNS name, with the key usages the Basic256Sha256
and Aes128_Sha256_RsaOaep policies need (signature, key and data encipherment, non-repudiation).
The key is written through `hostio.secretfiles` (mode 0600, atomic, never over an existing file
unless `replace`); the certificate the same way (it is public, but a half-written one is as bad).
`cryptography` only: no asyncua.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hostio.secretfiles import write_secret_file

_VALID_DAYS = 10 * 365


def default_application_uri(name: str) -> str:
    """The application URI of the source called `name` on this host, when none is configured."""
    return f"urn:tierless:{socket.gethostname()}:{name}"


def write_client_identity(
    cert_path: str | Path, key_path: str | Path, application_uri: str, *, replace: bool = False
) -> tuple[bytes, bytes]:
    """Make a pair and write it: the key (0600) first, then the certificate. Returns (DER
    certificate, PEM key). Raises `hostio.errors.SecretFileError` (SecretFileExistsError when a
    file is there and not `replace`)."""
    cert_der, key_pem = make_client_identity(application_uri)
    write_secret_file(key_path, key_pem, replace=replace, what="OPC UA client key")
    write_secret_file(cert_path, cert_der, replace=replace, what="OPC UA client certificate")
    return cert_der, key_pem


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


def fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate, as operators compare it (hex, colon-separated)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex(":").upper()


def sha1_thumbprint(der: bytes) -> str:
    """SHA-1 of a certificate: the "thumbprint" most OPC UA servers show in their trust list."""
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - an identifier servers display, not a MAC
    digest.update(der)
    return digest.finalize().hex(":").upper()
