"""OPC UA status codes to our quality: pure, no asyncua.

A StatusCode (OPC 10000-4, 7.39) is 32 bits: the top two are the severity (00 Good, 01
Uncertain, 10 Bad, 11 reserved and taken as Bad), bits 16–27 the sub-code that says why, the low
16 bits flags (info type, overflow, limit bits). The reading keeps the severity as its quality;
the condition (the code with its flag bits cleared, e.g. 0x80340000 BadNodeIdUnknown) is counted
in the source's stats so the substatus is not lost, and the one flag that says values were lost
on the server (a monitored item's queue overflowed) is counted on its own.
"""

from __future__ import annotations

from wire.models import Quality

GOOD = 0x00000000
_SEVERITY_SHIFT = 30
_CONDITION_MASK = 0xFFFF0000

# The conditions this source itself acts on or names in its messages.
BAD_NODE_ID_UNKNOWN = 0x80340000
BAD_NODE_ID_INVALID = 0x80330000
BAD_NO_MATCH = 0x806F0000  # TranslateBrowsePathsToNodeIds: the path leads nowhere
BAD_SHUTDOWN = 0x800C0000
BAD_SERVER_HALTED = 0x800E0000

NODE_MISSING = frozenset({BAD_NODE_ID_UNKNOWN, BAD_NODE_ID_INVALID, BAD_NO_MATCH})


def quality(code: int) -> Quality:
    """GOOD, UNCERTAIN or BAD from the code's severity bits."""
    severity = (code >> _SEVERITY_SHIFT) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def condition(code: int) -> int:
    """The code without its flag bits: what happened, whatever the info bits say."""
    return code & _CONDITION_MASK


def overflowed(code: int) -> bool:
    """The server's queue for this monitored item overflowed before this value: values were
    discarded (InfoType DataValue, bits 10–11 = 01, with the Overflow bit 7)."""
    return code & 0x00000C80 == 0x00000480


def counter_key(code: int) -> str:
    """The stats key a non-good condition is counted under: `0x80340000`."""
    return f"0x{condition(code):08X}"
