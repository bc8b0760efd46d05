"""The one line a command prints when the role it belongs to is not installed.

Every console script of the `tierless` distribution is installed with the package, whichever
extras were chosen (entry points cannot depend on extras), so each role's command starts through
a launcher that imports the command's module and, if a dependency of its role is missing, prints
this line instead of a traceback:

    edge-cloud: the "cloud" extra is not installed here (no module named 'uvicorn'): \
        pip install 'tierless[cloud]'

(one line; broken here for width)

and exits with status `EXIT_MISSING_EXTRA`. The commands and their extras:

    edge-agent             agent
    edge-cloud             cloud (and postgres for a postgresql:// database)
    edgectl                provisioning
    tierless-mcu-emulator  serial

Nothing is checked on the way in: a launcher costs nothing when the role is installed.
"""

from __future__ import annotations

from wire.version import DISTRIBUTION

# sysexits.h EX_UNAVAILABLE ("a support program or file does not exist"): the commands' own
# codes are small numbers with their own meanings, and this one is none of them.
EXIT_MISSING_EXTRA = 69


def missing_extra_line(command: str, extra: str, exc: ModuleNotFoundError) -> str:
    """What `command` prints when importing it raised `exc` because `extra` is not installed."""
    module = exc.name or str(exc)
    return (
        f'{command}: the "{extra}" extra is not installed here (no module named {module!r}):'
        f" pip install '{DISTRIBUTION}[{extra}]'"
    )
