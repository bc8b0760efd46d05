"""The installed release of Tierless, which every command prints for `--version`.

The number is written once, in pyproject.toml; the commands read it from the metadata the
installer wrote, so what they print is what is installed. The metadata is read when asked for,
never at import: the rest of `wire` still does no I/O.
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "tierless"


def release() -> str:
    """The installed distribution's version, e.g. "0.1.0", or "unknown" for a source tree that
    was never installed (a version must never be why a command fails)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line(prog: str) -> str:
    """What `prog --version` prints: the command's name and the release, e.g. "edgectl 0.1.0"."""
    return f"{prog} {release()}"
