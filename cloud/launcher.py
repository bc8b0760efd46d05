"""The `edge-cloud` console script: the receiver, or one line naming the extra to install
(`wire.extras`) when this installation lacks the "cloud" extra."""

from __future__ import annotations

import sys

from wire.extras import EXIT_MISSING_EXTRA, missing_extra_line


def main() -> int:
    try:
        from cloud.cli import main as command  # here: importing it is what needs the extra
    except ModuleNotFoundError as exc:
        print(missing_extra_line("edge-cloud", "cloud", exc), file=sys.stderr)
        return EXIT_MISSING_EXTRA
    return command()
