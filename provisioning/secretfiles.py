"""Secret files (device keys, admin tokens, install bundles): read like OpenSSH, write atomically.

Reading a private file (OpenSSH `sshkey_perm_ok`, the same rule as `agent.keyfile`, with no
time-of-check/time-of-use gap):
- opened with O_NOFOLLOW (a symlink is refused, not followed) and O_NONBLOCK (a FIFO planted at
  the path cannot hang us);
- fstat of the open descriptor: a regular file, owned by this user (root may read any owner's),
  no permission bit for group or others;
- its directory is not writable by group or others (else the file could be swapped), unless the
  directory is sticky;
- a size cap. Refusals say what to run: "Permissions 0640 for '/…/device.key' are too open;
  chmod 600 '/…/device.key'".

Writing (keys, tokens, bundle files): under umask 077, a temporary file beside the target made
O_CREAT|O_EXCL|O_NOFOLLOW with mode 0600, written, fsync'ed, then moved into place: `os.link`
when the target must not exist (atomic "create if absent": two runs cannot both win), or
`os.replace` when replacing is intended; then the directory is fsync'ed. A crash leaves either
no file or the whole file, never a part.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning.errors import KeyFileError, LocalError
from wire.errors import SignatureError
from wire.keys import load_private_key_pem, private_key_to_pem

MAX_KEY_FILE_BYTES = 64 * 1024
MAX_TOKEN_FILE_BYTES = 4096


def read_private_file(
    path: str | Path, *, what: str, max_bytes: int, error: type[LocalError] = LocalError
) -> bytes:
    """The bytes of a file only this user may read; `error` saying how to fix it otherwise."""
    name = str(path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(name, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(
                f"{what} '{name}' is a symlink; refusing to follow it "
                f"(put the file itself there: cp --remove-destination \"$(readlink -f '{name}')\" "
                f"'{name}')"
            ) from exc
        if exc.errno == errno.ENOENT:
            raise error(f"{what} '{name}' does not exist") from exc
        raise error(f"{what} '{name}': cannot open: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} '{name}' is not a regular file")
        euid = os.geteuid()
        if st.st_uid != euid and euid != 0:
            raise error(
                f"{what} '{name}' is owned by uid {st.st_uid}, not by this user (uid {euid}); "
                f"run as its owner, or chown it"
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise error(
                f"Permissions {mode:04o} for '{name}' are too open; chmod 600 '{name}' "
                f"(a {what} must not be readable by group or others)"
            )
        check_directory(Path(name).absolute().parent, error=error)
        data = os.read(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{what} '{name}' is larger than {max_bytes} bytes")
    return data


def check_directory(directory: Path, *, error: type[LocalError] = LocalError) -> None:
    """Refuse a directory that group or others may write (unless sticky, like /tmp)."""
    try:
        st = directory.stat()
    except OSError as exc:
        raise error(f"directory '{directory}': {exc.strerror}") from exc
    if stat.S_IMODE(st.st_mode) & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise error(
            f"directory '{directory}' is writable by group or others; chmod 700 '{directory}'"
        )


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
    """Store `key` as PKCS#8 PEM, mode 0600, atomically (see the module docstring)."""
    write_secret_file(path, private_key_to_pem(key), replace=replace, error=KeyFileError)


def write_secret_file(
    path: str | Path,
    data: bytes,
    *,
    replace: bool,
    error: type[LocalError] = LocalError,
) -> None:
    """Write `data` to `path` with mode 0600, atomically; without `replace` an existing file
    (or symlink) is an error and is left alone."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    old_umask = os.umask(0o077)
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, target)
        else:
            _link_exclusive(tmp, target, error)
        fsync_directory(target.parent)
    except OSError as exc:
        raise error(f"cannot write '{target}': {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.umask(old_umask)


def _link_exclusive(tmp: Path, target: Path, error: type[LocalError]) -> None:
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError as exc:
        raise error(f"'{target}' already exists; refusing to replace it") from exc
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # No hard links here (FAT on a USB stick): check, then rename. Not atomic against a
        # second writer, which nobody runs on an install medium.
        if target.exists() or target.is_symlink():
            raise error(f"'{target}' already exists; refusing to replace it") from exc
        os.replace(tmp, target)


def move_into_place(source: Path, target: Path) -> None:
    """Rename `source` over `target` (same directory) and make it durable."""
    try:
        os.replace(source, target)
        fsync_directory(target.parent)
    except OSError as exc:
        raise LocalError(f"cannot move '{source}' to '{target}': {exc.strerror}") from exc


def remove_file(path: Path) -> None:
    """Delete `path` if it exists, durably."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LocalError(f"cannot remove '{path}': {exc.strerror}") from exc
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(path: Path) -> bool:
    """True for a file or a symlink (even a dangling one) at `path`."""
    return path.exists() or path.is_symlink()
