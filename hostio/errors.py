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

Every caller translates these into its own package's errors at its boundary (`agent.keyfile`,
`provisioning.secretfiles`, `cloud.receiver.tokenfiles`); OSError never travels past hostio.
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
