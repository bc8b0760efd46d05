"""Errors of the machine-level helpers, split by what the caller does next.

    HostError                          anything hostio raises on purpose
    └── SecretFileError                a secret file cannot be read or written as asked;
        │                              `path` names it, `str()` says what is wrong and the fix
        ├── SecretFileMissingError     nothing at the path (reading): create or enrol first
        ├── SecretFileUnsafeError      a symlink, not a regular file, another owner, readable by
        │                              group or others, in an open directory, or too large: fix
        │                              the file, then retry
        └── SecretFileExistsError      writing without `replace` found something at the path: it
                                       is left alone
    └── SignedClientError              the signed client (`hostio.signedclient`) failed
        ├── CaBundleError              the CA bundle cannot be read or holds no certificate: fix
        │                              the configured file
        └── ExchangeError              no HTTP answer (`detail` says why): retry later
            ├── TlsError               the TLS handshake failed
            │   └── CertificateError   the receiver's certificate does not verify
            ├── ExchangeTimeoutError   no answer in time
            └── UnreachableError       no connection, or it broke off

Every caller translates these into its own package's errors at its boundary (`agent.keyfile`,
`provisioning.secretfiles`, `cloud.receiver.tokenfiles`, `agent.uplink`, `provisioning.client`);
OSError, ssl and httpx errors never travel past hostio.
"""

from __future__ import annotations

from pathlib import Path


class HostError(Exception):
    """Base of every error hostio raises on purpose."""


class SecretFileError(HostError):
    """A secret file cannot be used as asked; the message names the path and what is wrong."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(message)
        self.path = str(path)


class SecretFileMissingError(SecretFileError):
    """There is no file at the path."""


class SecretFileUnsafeError(SecretFileError):
    """The file is there but breaks the OpenSSH-style rule (see `hostio.secretfiles`)."""


class SecretFileExistsError(SecretFileError):
    """A write that must not replace anything found a file (or a symlink) at the path."""


class SignedClientError(HostError):
    """Base of every error this module raises."""


class CaBundleError(SignedClientError):
    """The CA bundle file cannot be read or holds no usable certificate; `reason` says why."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ExchangeError(SignedClientError):
    """The request got no HTTP answer; `detail` is the short reason."""

    def __init__(self, message: str, *, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class TlsError(ExchangeError):
    """The TLS handshake with the receiver failed."""


class CertificateError(TlsError):
    """The receiver's certificate does not verify against the trusted CAs."""


class ExchangeTimeoutError(ExchangeError):
    """No answer within the time allowed."""


class UnreachableError(ExchangeError):
    """No connection, or the exchange broke off."""
