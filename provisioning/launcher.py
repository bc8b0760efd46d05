"""The `edgectl` console script: enrolment and key management, or one line naming
the extra to install (`wire.extras`) when this installation lacks the "provisioning" extra."""

from __future__ import annotations

import sys

from wire.extras import EXIT_MISSING_EXTRA, missing_extra_line


def main() -> int:
    try:
        from provisioning.cli import main as command  # here: importing it is what needs the extra
    except ModuleNotFoundError as exc:
        print(missing_extra_line("edgectl", "provisioning", exc), file=sys.stderr)
        return EXIT_MISSING_EXTRA
    return command()
