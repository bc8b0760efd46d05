"""MCU positions kept in the buffer: `firmware_bridge.watermarks.Watermarks`, exactly once.

The MCU source drops replayed readings at or before an MCU's committed position (uid → (boot,
seq)). `FileWatermarks` keeps that position in a file of its own, written after the buffer
commit, so a crash between the two replays (and duplicates) the readings of that window. Here the
position is committed *in the buffer's transaction*, together with the readings it ends:

1. the MCU adapter hands a delivery's readings to the ingest, then `stage()`s its position;
   the ingest commits both in the next group, in one transaction (`Buffer.commit`);
2. after that commit the adapter acknowledges the delivery; the bridge then `save()`s the
   position (here: only remembered, it is durable already) and sends ACK, so the MCU deletes;
3. after any crash the buffer holds readings and position as of the same commit; on start
   `load()` serves that position, the bridge ACKs it, and the MCU's replay of the same readings
   is dropped. Nothing committed is lost (the MCU kept it) and nothing is committed twice.

`forget()` (an MCU whose history was reset) removes the position in the next group commit.
Used from the event loop only, like the ingest.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.buffer import Position
from agent.ingest import Ingest
from firmware_bridge.source import McuPosition


class BufferWatermarks:
    def __init__(self, committed: Mapping[int, Position], ingest: Ingest) -> None:
        self._known = dict(committed)  # what the bridge may rely on: committed positions
        self._ingest = ingest

    def stage(self, position: McuPosition) -> None:
        """Commit `position` with the readings added to the ingest before it."""
        self._ingest.set_position(position.uid, (position.boot, position.seq))

    def load(self, uid: int) -> Position | None:
        return self._known.get(uid)

    def save(self, uid: int, position: Position) -> None:
        self._known[uid] = position  # durable since the commit that came before this call

    def forget(self, uid: int) -> None:
        self._known.pop(uid, None)
        self._ingest.set_position(uid, None)
