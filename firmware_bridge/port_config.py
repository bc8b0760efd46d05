"""Where a serial device is and how its line is framed: configuration only, no I/O.

Kept apart from `port` (which imports pyserial and opens ttys) so that loading a configuration
never imports the I/O stack.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


class PortConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where a device is and how its line is framed."""

    path: Annotated[str, msgspec.Meta(min_length=1)]
    baudrate: Annotated[int, msgspec.Meta(gt=0)] = 115200
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
