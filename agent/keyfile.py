"""The device's private key file: refuse an unsafe one, write a new one atomically.

The file rule is `hostio.secretfiles`' (OpenSSH-style, shared with edgectl and the receiver):
opened with O_NOFOLLOW|O_NONBLOCK, fstat of the open descriptor, a regular file owned by this
user with no group/other bits, in a directory others cannot write, at most 64 KiB. Written with
mode 0600, fsync'ed, and linked into place, so an existing key is never replaced by accident and
a crash leaves either no file or the whole file. This module adds the key itself (an Ed25519
private key in PEM), the agent's hint for a missing file, and `KeyFileError`.

Following a rotation (`DeviceKey`): `edgectl rotate-key` renames the new key over the file while
the agent runs. Before each upload attempt the agent calls `DeviceKey.refresh()`, which compares
the file's identity (`lstat`: inode, mtime, ctime, size; no read) with the one it loaded and, if
it changed, loads the file again with every check above. A file that fails them leaves the key in
use unchanged and `error` set (the old key stays valid at the receiver for the overlap period);
the same bad file is not retried until it changes again. ctime is in the identity so that fixing
a bad file with chmod or chown alone is noticed too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import KeyFileError
from hostio.errors import SecretFileError, SecretFileMissingError
from hostio.secretfiles import read_secret_file, write_secret_file
from wire.errors import SignatureError
from wire.keys import key_id, load_private_key_pem, private_key_to_pem

log = logging.getLogger(__name__)

MAX_KEY_FILE_BYTES = 64 * 1024
Identity = tuple[int, int, int, int, int]  # st_ino, st_mtime_ns, st_ctime_ns, st_size, st_dev


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 key in `path`, or KeyFileError saying exactly what is wrong with the file."""
    return _load(path)[0]


def _identity(st: os.stat_result) -> Identity:
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_dev)


class DeviceKey:
    """The device's signing key, following its file. Not thread-safe (the event loop's)."""

    def __init__(self, path: str | Path) -> None:
        """Load the key; KeyFileError if the file is unusable (at start that is fatal)."""
        self.path = str(path)
        self.key, self._identity = _load(self.path)
        self.keyid = key_id(self.key.public_key())
        self.error: str | None = None  # why the file on disk is not the key in use
        self.reloads = 0
        self.failures = 0
        self._failed: Identity | None = None

    def refresh(self) -> bool:
        """Reload the key if its file changed; True when a new key is now in use. Never raises:
        an unusable file keeps the current key and sets `error` (logged once per change)."""
        try:
            identity: Identity | None = _identity(os.lstat(self.path))
        except OSError:
            identity = None  # gone: the load below says so in its own words
        if identity is not None and identity in (self._identity, self._failed):
            return False
        try:
            key, loaded = _load(self.path)
        except KeyFileError as exc:
            if (identity, str(exc)) != (self._failed, self.error):
                self.failures += 1
                log.error(
                    "cannot reload the device key: %s; still signing with %s", exc, self.keyid
                )
            self._failed, self.error = identity, str(exc)
            return False
        self._identity, self._failed, self.error = loaded, None, None
        new_id = key_id(key.public_key())
        if new_id == self.keyid:
            return False  # the same key rewritten (a copy, a touch)
        log.info(
            "device key reloaded from %s: signing with %s (was %s)", self.path, new_id, self.keyid
        )
        self.key, self.keyid = key, new_id
        self.reloads += 1
        return True


def _load(path: str | Path) -> tuple[Ed25519PrivateKey, Identity]:
    """The key and the identity of the very file it was read from (fstat of the open fd)."""
    name = str(path)
    try:
        secret = read_secret_file(name, what="key file", max_bytes=MAX_KEY_FILE_BYTES)
    except SecretFileMissingError as exc:
        raise KeyFileError(f"{exc} (enrol the device first)") from exc
    except SecretFileError as exc:
        raise KeyFileError(str(exc)) from exc
    try:
        return load_private_key_pem(secret.data), _identity(secret.status)
    except SignatureError as exc:
        raise KeyFileError(f"key file '{name}' is not an Ed25519 private key in PEM") from exc


def write_private_key(path: str | Path, key: Ed25519PrivateKey, *, overwrite: bool = False) -> None:
    """Store `key` in `path` as PEM, mode 0600, atomically; KeyFileError if it cannot.

    Without `overwrite`, an existing file is an error: replacing a device key by accident would
    lock the device out of its enrolment.
    """
    try:
        write_secret_file(path, private_key_to_pem(key), replace=overwrite, what="key file")
    except SecretFileError as exc:
        raise KeyFileError(str(exc)) from exc
