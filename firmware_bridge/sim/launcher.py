"""The `tierless-mcu-emulator` console script: the MCU emulator, or one line naming the extra
to install (`wire.extras`) when this installation lacks the "serial" extra."""

from __future__ import annotations

import sys

from wire.extras import EXIT_MISSING_EXTRA, missing_extra_line


def main() -> int:
    try:
        from firmware_bridge.sim.emulator import (
            main as command,
        )  # here: importing it is what needs the extra
    except ModuleNotFoundError as exc:
        print(missing_extra_line("tierless-mcu-emulator", "serial", exc), file=sys.stderr)
        return EXIT_MISSING_EXTRA
    return command()
