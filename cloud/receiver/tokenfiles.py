"""Operator token files: read with the OpenSSH rule (`hostio.secretfiles`), or created once.

A token never comes from the command line (it would show in `ps` and shell history). It comes
from a file, from an environment variable (containers' secret injection), or it is generated on
first start into a new 0600 file whose *path* is printed, never its value.
"""

from __future__ import annotations

from pathlib import Path

from cloud.errors import ConfigError
from cloud.receiver.tokens import new_operator_token
from hostio.errors import SecretFileError
from hostio.secretfiles import exists, read_secret_text, write_secret_file

MIN_TOKEN_LENGTH = 16
MAX_TOKEN_FILE_BYTES = 4096


def read_token_file(path: Path) -> str:
    """The token in `path`; ConfigError if the file is missing, unsafe (`hostio.secretfiles`:
    a symlink, a FIFO, another owner, readable by others), too large, or not plausible."""
    try:
        text = read_secret_text(
            path, what="token file", max_bytes=MAX_TOKEN_FILE_BYTES, encoding="ascii"
        )
    except SecretFileError as exc:
        raise ConfigError([str(exc)]) from exc
    return check_token(text.strip(), str(path))


def check_token(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or " " in token:
        raise ConfigError([f"{where}: a token is at least {MIN_TOKEN_LENGTH} printable characters"])
    return token


def create_token_file(path: Path) -> str:
    """Write a new random token to `path` (which must not exist) with mode 0600, atomically (a
    crash leaves no half-written token); the token."""
    token = new_operator_token()
    try:
        write_secret_file(path, (token + "\n").encode("ascii"), what="token file")
    except SecretFileError as exc:
        raise ConfigError([str(exc)]) from exc
    return token


def load_or_create(
    *, file: Path | None, value: str | None, default_file: Path, what: str
) -> tuple[str, str | None]:
    """The token for `what`, and a notice to print when a file was created (else None)."""
    if file is not None:
        return read_token_file(file), None
    if value is not None:
        return check_token(value, f"the {what} token variable"), None
    if exists(default_file):
        return read_token_file(default_file), None
    token = create_token_file(default_file)
    return token, f"{what} token: created {default_file} (mode 0600); read it from there"
