"""The installed release of Tierless, which every command prints for `--version`.

The number is written once, in pyproject.toml; the commands read it from the metadata the
installer wrote, so what they print is what is installed. The metadata is read only when asked
for: importing `importlib.metadata` alone costs a command's start-up tens of milliseconds (and a
gateway agent must have its signal handlers in place as early as it can). The rest of `wire`
does no I/O.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

DISTRIBUTION = "tierless"


def release() -> str:
    """The installed distribution's version, e.g. "0.1.0", or "unknown" for a source tree that
    was never installed (a version must never be why a command fails)."""
    from importlib import metadata  # here, not at the top: see the module docstring

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line(prog: str) -> str:
    """What `prog --version` prints: the command's name and the release, e.g. "edgectl 0.1.0"."""
    return f"{prog} {release()}"


class VersionAction(argparse.Action):
    """`parser.add_argument("--version", action=VersionAction, prog="edge-agent")`: prints
    `version_line(prog)` to stdout and exits 0, as argparse's own version action does, but reads
    the release only when the option is given."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, *, prog: str, **kwargs: Any
    ) -> None:
        kwargs.setdefault("help", "print the installed release and exit")
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs
        )
        self.prog = prog

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        print(version_line(self.prog), flush=True)
        parser.exit()
