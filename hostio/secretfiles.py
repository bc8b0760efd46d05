"""Secret files (keys, tokens, passwords, bundles): read like OpenSSH, written atomically.

Reading, the OpenSSH `sshkey_perm_ok` rule made stricter, with no time-of-check/time-of-use gap.
The checks run in this order, and the first that fails is the one reported:
1. open with O_NOFOLLOW (a symlink is refused, not followed) and O_NONBLOCK (a FIFO planted at
   the path cannot hang the process: the open returns at once and step 2 refuses it);
2. fstat of the *open descriptor*, never of the path: a regular file;
3. owned by this user (with `root_reads_any`, root may read another user's file: `sudo edgectl`
   checking the agent's key);
4. no permission bit for group or others;
5. its directory is not writable by group or others (else the file could be swapped), unless
   the directory is sticky like /tmp;
6. at most `max_bytes` bytes.
Refusals name the path and what to run: "Permissions 0640 for '/…/device.key' are too open;
chmod 600 '/…/device.key'".

Writing: a temporary file beside the target made O_CREAT|O_EXCL|O_NOFOLLOW with mode 0600
(fchmod'ed, so no umask can loosen or tighten it), written whole, fsync'ed, then moved into place
and the directory fsync'ed. A crash leaves either no file or the whole file, never a part.
- `replace=False` (the default): `os.link` the temporary file to the target, which fails if
  anything, even a dangling symlink, is there. That is an atomic "create if absent": of two
  writers exactly one wins, and no check-then-rename race can overwrite a file that appeared
  in between. Only on a file system without hard links (FAT on a USB stick) does it fall back
  to check-then-rename, which nobody races on an install medium.
- `replace=True`: `os.replace`, for files that are meant to be replaced (a CA bundle).
Missing parent directories are created with mode 0700 (each of them, not only the last).

Nothing here logs or returns a secret in an error message. Errors: `hostio.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from hostio.errors import (
    SecretFileError,
    SecretFileExistsError,
    SecretFileMissingError,
    SecretFileUnsafeError,
)

DEFAULT_MAX_BYTES = 64 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


@dataclass(frozen=True, slots=True)
class SecretFile:
    """The bytes of a secret file and the fstat of the very descriptor they were read from
    (callers that follow a file's changes compare its identity: inode, times, size)."""

    data: bytes
    status: os.stat_result


def read_secret_file(
    path: str | Path,
    *,
    what: str = "secret file",
    max_bytes: int = DEFAULT_MAX_BYTES,
    root_reads_any: bool = False,
) -> SecretFile:
    """Read a file only this user may read (the rule in the module docstring).

    `what` names the file in errors ("key file", "admin token file"). Raises
    SecretFileMissingError, SecretFileUnsafeError, or SecretFileError for any other failure.
    """
    name = str(path)
    try:
        fd = os.open(name, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SecretFileUnsafeError(
                name,
                f"{what} '{name}' is a symlink; refusing to follow it (put the file itself "
                f"there: cp --remove-destination \"$(readlink -f '{name}')\" '{name}')",
            ) from exc
        if exc.errno == errno.ENOENT:
            raise SecretFileMissingError(name, f"{what} '{name}' does not exist") from exc
        raise SecretFileError(name, f"{what} '{name}': cannot open: {exc.strerror}") from exc
    try:
        status = os.fstat(fd)
        _check_status(name, status, what=what, root_reads_any=root_reads_any)
        check_directory(Path(name).absolute().parent)
        data = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        raise SecretFileError(name, f"{what} '{name}': cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise SecretFileUnsafeError(name, f"{what} '{name}' is larger than {max_bytes} bytes")
    return SecretFile(data, status)


def read_secret_text(
    path: str | Path,
    *,
    what: str = "secret file",
    max_bytes: int = 4096,
    encoding: str = "utf-8",
    root_reads_any: bool = False,
) -> str:
    """The decoded text of a small secret file (a token, a password), read by the same rule as
    `read_secret_file`; SecretFileError too if it is not text in `encoding`. Nothing is stripped:
    whether a trailing newline or a second line matters is the caller's format."""
    data = read_secret_file(
        path, what=what, max_bytes=max_bytes, root_reads_any=root_reads_any
    ).data
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        label = "ASCII" if encoding.lower() == "ascii" else encoding.upper()
        raise SecretFileError(path, f"{what} '{path}' is not {label} text") from exc


def _check_status(name: str, st: os.stat_result, *, what: str, root_reads_any: bool) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileUnsafeError(name, f"{what} '{name}' is not a regular file")
    euid = os.geteuid()
    if st.st_uid != euid and not (root_reads_any and euid == 0):
        raise SecretFileUnsafeError(
            name,
            f"{what} '{name}' is owned by uid {st.st_uid}, not by this user (uid {euid}); "
            "run as its owner, or chown it",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise SecretFileUnsafeError(
            name,
            f"Permissions {mode:04o} for '{name}' are too open; chmod 600 '{name}' "
            f"(a {what} must not be readable by group or others)",
        )


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def check_directory(directory: Path) -> None:
    """Refuse a directory that group or others may write (unless sticky, like /tmp): anyone who
    can write it can swap the file in it for their own."""
    try:
        st = directory.stat()
    except OSError as exc:
        raise SecretFileError(directory, f"directory '{directory}': {exc.strerror}") from exc
    if stat.S_IMODE(st.st_mode) & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise SecretFileUnsafeError(
            directory,
            f"directory '{directory}' is writable by group or others; chmod 700 '{directory}'",
        )


def write_secret_file(
    path: str | Path, data: bytes, *, replace: bool = False, what: str = "file"
) -> None:
    """Write `data` to `path` with mode 0600, atomically and durably (see the module docstring).

    Without `replace`, anything at `path` (a file, a symlink, even a dangling one) is
    SecretFileExistsError and is left as it was.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        make_private_directory(target.parent)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken bits; the rule is exactly 0600
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, target)
        else:
            _link_exclusive(tmp, target, what)
        fsync_directory(target.parent)
    except OSError as exc:
        raise SecretFileError(
            target, f"cannot write {what} '{target}': {exc.strerror or exc}"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _link_exclusive(tmp: Path, target: Path, what: str) -> None:
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError as exc:
        raise _exists(target, what) from exc
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # No hard links on this file system (FAT): check, then rename. Not atomic against a
        # second writer, which nobody runs on an install medium.
        if exists(target):
            raise _exists(target, what) from exc
        os.replace(tmp, target)


def _exists(target: Path, what: str) -> SecretFileExistsError:
    return SecretFileExistsError(
        target, f"{what} '{target}' already exists; refusing to replace it"
    )


def make_private_directory(directory: Path) -> None:
    """Create `directory` and any missing parent with mode 0700; existing ones are left as
    they are (`check_directory` judges them when a file in them is read)."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # mkdir's mode passes through the umask


def move_into_place(source: Path, target: Path) -> None:
    """Rename `source` over `target` (same directory) and make the rename durable."""
    try:
        os.replace(source, target)
        fsync_directory(target.parent)
    except OSError as exc:
        raise SecretFileError(
            target, f"cannot move '{source}' to '{target}': {exc.strerror}"
        ) from exc


def remove_file(path: Path) -> None:
    """Delete `path` if it exists, durably."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SecretFileError(path, f"cannot remove '{path}': {exc.strerror}") from exc
    try:
        fsync_directory(path.parent)
    except OSError as exc:
        raise SecretFileError(path, f"cannot remove '{path}': {exc.strerror}") from exc


def fsync_directory(directory: Path) -> None:
    """Make a rename, link or unlink in `directory` durable. OSError as is: callers translate."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(path: Path) -> bool:
    """True for a file or a symlink (even a dangling one) at `path`."""
    return path.exists() or path.is_symlink()
