"""edgectl's secret files (device keys, admin tokens, install bundles) on `hostio.secretfiles`.

The rule itself (read like OpenSSH: O_NOFOLLOW|O_NONBLOCK, fstat of the open descriptor, a
regular file of ours with mode 0600 in a directory others cannot write; write 0600, fsync'ed,
atomically, never replacing unless asked) lives in `hostio.secretfiles`, shared with the agent
and the receiver. This module adds what edgectl means by it: root may read another user's file
(`sudo edgectl doctor` checks the agent's key), a key is an Ed25519 private key in PEM, and every
failure is a `LocalError` (exit code 3) or a `KeyFileError` saying how to fix it.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hostio import secretfiles as host
from hostio.errors import SecretFileError
from provisioning.errors import KeyFileError, LocalError
from wire.errors import SignatureError
from wire.keys import load_private_key_pem, private_key_to_pem

MAX_KEY_FILE_BYTES = 64 * 1024
MAX_TOKEN_FILE_BYTES = 4096


def read_private_file(
    path: str | Path, *, what: str, max_bytes: int, error: type[LocalError] = LocalError
) -> bytes:
    """The bytes of a file only this user (or root) may read; `error` saying how to fix it."""
    try:
        return host.read_secret_file(path, what=what, max_bytes=max_bytes, root_reads_any=True).data
    except SecretFileError as exc:
        raise error(str(exc)) from exc


def check_directory(directory: Path, *, error: type[LocalError] = LocalError) -> None:
    """Refuse a directory that group or others may write (unless sticky, like /tmp)."""
    try:
        host.check_directory(directory)
    except SecretFileError as exc:
        raise error(str(exc)) from exc


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 key in `path`; KeyFileError saying exactly what is wrong with the file."""
    data = read_private_file(
        path, what="key file", max_bytes=MAX_KEY_FILE_BYTES, error=KeyFileError
    )
    try:
        return load_private_key_pem(data)
    except SignatureError as exc:
        raise KeyFileError(f"key file '{path}' is not an Ed25519 private key in PEM") from exc


def write_private_key(path: str | Path, key: Ed25519PrivateKey, *, replace: bool) -> None:
    """Store `key` as PKCS#8 PEM, mode 0600, atomically; KeyFileError if it cannot."""
    try:
        host.write_secret_file(path, private_key_to_pem(key), replace=replace, what="key file")
    except SecretFileError as exc:
        raise KeyFileError(str(exc)) from exc


def write_secret_file(
    path: str | Path, data: bytes, *, replace: bool, error: type[LocalError] = LocalError
) -> None:
    """Write `data` to `path` with mode 0600, atomically; without `replace` an existing file
    (or symlink) is an error and is left alone."""
    try:
        host.write_secret_file(path, data, replace=replace)
    except SecretFileError as exc:
        raise error(str(exc)) from exc


def move_into_place(source: Path, target: Path) -> None:
    """Rename `source` over `target` (same directory) and make it durable."""
    try:
        host.move_into_place(source, target)
    except SecretFileError as exc:
        raise LocalError(str(exc)) from exc


def remove_file(path: Path) -> None:
    """Delete `path` if it exists, durably."""
    try:
        host.remove_file(path)
    except SecretFileError as exc:
        raise LocalError(str(exc)) from exc


def exists(path: Path) -> bool:
    """True for a file or a symlink (even a dangling one) at `path`."""
    return host.exists(path)
