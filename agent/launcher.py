"""The `edge-agent` console script: the gateway agent, or one line naming the extra to install
(`wire.extras`) when this installation lacks the "agent" extra."""

from __future__ import annotations

import sys

from wire.extras import EXIT_MISSING_EXTRA, missing_extra_line


def main() -> int:
    try:
        from agent.cli import main as command  # here: importing it is what needs the extra
    except ModuleNotFoundError as exc:
        print(missing_extra_line("edge-agent", "agent", exc), file=sys.stderr)
        return EXIT_MISSING_EXTRA
    return command()
