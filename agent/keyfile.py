"""The device's private key file: refuse an unsafe one, write a new one atomically.

Reading (OpenSSH `sshkey_perm_ok`, made stricter; no time-of-check/time-of-use gap):
- open with O_NOFOLLOW, so a symlink is refused rather than followed;
- fstat the open descriptor: a regular file, owned by this user, no group/other permission bits;
- the directory must not be writable by group or others (else the file could be swapped);
- at most 64 KiB is read, and it must be an Ed25519 private key in PEM.
The refusal reads like OpenSSH's: "Permissions 0640 for '/…/device.key' are too open; chmod 600 it".

Writing: umask 077, a temporary file created O_EXCL|O_NOFOLLOW with mode 0600, fsync, rename
over the target, fsync the directory. A crash leaves either the old file or the new one.

Following a rotation (`DeviceKey`): `edgectl rotate-key` renames the new key over the file while
the agent runs. Before each upload attempt the agent calls `DeviceKey.refresh()`, which compares
the file's identity (`lstat`: inode, mtime, ctime, size; no read) with the one it loaded and, if
it changed, loads the file again with every check above. A file that fails them leaves the key in
use unchanged and `error` set (the old key stays valid at the receiver for the overlap period);
the same bad file is not retried until it changes again. ctime is in the identity so that fixing
a bad file with chmod or chown alone is noticed too.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import KeyFileError
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
        # O_NONBLOCK: opening a FIFO planted at the path must not hang the agent
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        fd = os.open(name, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(f"key file '{name}' is a symlink; refusing to follow it") from exc
        if exc.errno == errno.ENOENT:
            raise KeyFileError(
                f"key file '{name}' does not exist (enrol the device first)"
            ) from exc
        raise KeyFileError(f"key file '{name}': cannot open: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file '{name}' is not a regular file")
        if st.st_uid != os.geteuid():
            raise KeyFileError(
                f"key file '{name}' is owned by uid {st.st_uid}, not by this user "
                f"(uid {os.geteuid()}); chown it"
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"Permissions {mode:04o} for '{name}' are too open; chmod 600 it. "
                "Refusing to start."
            )
        _check_directory(Path(name).absolute().parent)
        data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file '{name}' is larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        return load_private_key_pem(data), _identity(st)
    except SignatureError as exc:
        raise KeyFileError(f"key file '{name}' is not an Ed25519 private key in PEM") from exc


def _check_directory(directory: Path) -> None:
    st = directory.stat()
    if stat.S_IMODE(st.st_mode) & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise KeyFileError(
            f"directory '{directory}' of the key file is writable by group or others; chmod 700 it"
        )


def write_private_key(path: str | Path, key: Ed25519PrivateKey, *, overwrite: bool = False) -> None:
    """Store `key` in `path` as PEM, mode 0600, atomically; KeyFileError if it cannot.

    Without `overwrite`, an existing file is an error: replacing a device key by accident would
    lock the device out of its enrolment.
    """
    target = Path(path)
    if not overwrite and (target.exists() or target.is_symlink()):
        raise KeyFileError(f"key file '{target}' already exists; refusing to replace it")
    data = private_key_to_pem(key)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old_umask = os.umask(0o077)
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise KeyFileError(f"cannot write key file '{target}': {exc.strerror or exc}") from exc
    finally:
        os.umask(old_umask)
