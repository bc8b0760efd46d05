"""Operator token files: read with the OpenSSH rule (0600, ours, no symlink), or created once.

A token never comes from the command line (it would show in `ps` and shell history). It comes
from a file, from an environment variable (containers' secret injection), or it is generated on
first start into a new 0600 file whose *path* is printed, never its value.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cloud.errors import ConfigError
from cloud.receiver.tokens import new_operator_token

MIN_TOKEN_LENGTH = 16
MAX_TOKEN_FILE_BYTES = 4096


def read_token_file(path: Path) -> str:
    """The token in `path`; ConfigError if the file is missing, too open, or not plausible."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise ConfigError([f"token file {path} does not exist"]) from exc
    except OSError as exc:
        raise ConfigError([f"cannot open token file {path}: {exc.strerror}"]) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([f"token file {path} is not a regular file"])
        if st.st_uid != os.geteuid():
            raise ConfigError([f"token file {path} is not owned by this user"])
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise ConfigError([f"permissions {mode:04o} for {path} are too open; chmod 600 it"])
        data = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ConfigError([f"token file {path} is larger than {MAX_TOKEN_FILE_BYTES} bytes"])
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError([f"token file {path} is not ASCII text"]) from exc
    return check_token(token, str(path))


def check_token(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or " " in token:
        raise ConfigError([f"{where}: a token is at least {MIN_TOKEN_LENGTH} printable characters"])
    return token


def create_token_file(path: Path) -> str:
    """Write a new random token to `path` (which must not exist) with mode 0600; the token."""
    token = new_operator_token()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError([f"cannot create token file {path}: {exc.strerror}"]) from exc
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def load_or_create(
    *, file: Path | None, value: str | None, default_file: Path, what: str
) -> tuple[str, str | None]:
    """The token for `what`, and a notice to print when a file was created (else None)."""
    if file is not None:
        return read_token_file(file), None
    if value is not None:
        return check_token(value, f"the {what} token variable"), None
    if default_file.exists() or default_file.is_symlink():
        return read_token_file(default_file), None
    token = create_token_file(default_file)
    return token, f"{what} token: created {default_file} (mode 0600); read it from there"
