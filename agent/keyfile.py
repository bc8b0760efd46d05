"""The device's private key file: refuse an unsafe one, write a new one atomically.

Reading (OpenSSH `sshkey_perm_ok`, made stricter; no time-of-check/time-of-use gap):
- open with O_NOFOLLOW, so a symlink is refused rather than followed;
- fstat the open descriptor: a regular file, owned by this user, no group/other permission bits;
- the directory must not be writable by group or others (else the file could be swapped);
- at most 64 KiB is read, and it must be an Ed25519 private key in PEM.
The refusal reads like OpenSSH's: "Permissions 0640 for '/…/device.key' are too open; chmod 600 it".

Writing: umask 077, a temporary file created O_EXCL|O_NOFOLLOW with mode 0600, fsync, rename
over the target, fsync the directory. A crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import KeyFileError
from wire.errors import SignatureError
from wire.keys import load_private_key_pem, private_key_to_pem

MAX_KEY_FILE_BYTES = 64 * 1024


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 key in `path`, or KeyFileError saying exactly what is wrong with the file."""
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
        return load_private_key_pem(data)
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
