"""Where the MCU source keeps, per MCU uid, the position of the last committed reading.

The MCU source (`agent.sources.mcu`) drops replayed readings at or before an MCU's committed
position (uid → `McuPosition`). The guarantee is only as strong as the store, and every store
speaks the one `Watermarks` protocol:

- `BufferWatermarks` (what the agent uses): the position is committed *in the buffer's
  transaction*, together with the readings it ends. Exactly once across crashes:
  1. the source adds a batch's readings to the sink, then `stage()`s its position; the ingest
     commits both in the next group, in one transaction (`Buffer.commit`);
  2. after `await sink.committed()` the source calls `save()` (here: only remembered, it is
     durable already) and sends ACK, so the MCU deletes;
  3. after any crash the buffer holds readings and position as of the same commit; on start
     `load()` serves that position, the source ACKs it, and the MCU's replay of the same
     readings is dropped. Nothing committed is lost (the MCU kept it), nothing committed twice.
  `forget()` (an MCU whose history was reset) removes the position in the next group commit.
  Used from the event loop only, like the ingest.
- `FileWatermarks`: a small JSON file of its own, replaced atomically and fsync'ed on every
  `save()`, which comes after the buffer commit: a crash between the two replays (duplicates)
  the readings of that window once. A damaged file is reported and ignored (duplicates, never
  loss). For a bridge without the agent's buffer.
- `MemoryWatermarks`: exactly once within one process only (tests, benchmarks).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from agent.ingest import Ingest
from firmware_bridge.mcu_frames import McuPosition


class Watermarks(Protocol):
    """The committed position per MCU uid, as durable as the store allows."""

    def load(self, uid: int) -> McuPosition | None: ...
    def stage(self, uid: int, position: McuPosition) -> None:
        """Called right after the readings that end at `position` were added to the sink: a
        store that shares the sink's transaction commits it with them."""

    def save(self, uid: int, position: McuPosition) -> None:
        """Called once the readings up to `position` are committed (`await sink.committed()`)."""

    def forget(self, uid: int) -> None: ...


class BufferWatermarks:
    """Positions in the agent's buffer, committed with their readings (see the module doc)."""

    def __init__(self, committed: Mapping[int, tuple[int, int]], ingest: Ingest) -> None:
        # what the source may rely on: committed positions
        self._known = {uid: McuPosition(*pos) for uid, pos in committed.items()}
        self._ingest = ingest

    def stage(self, uid: int, position: McuPosition) -> None:
        self._ingest.set_position(uid, position)

    def load(self, uid: int) -> McuPosition | None:
        return self._known.get(uid)

    def save(self, uid: int, position: McuPosition) -> None:
        self._known[uid] = position  # durable since the commit that came before this call

    def forget(self, uid: int) -> None:
        self._known.pop(uid, None)
        self._ingest.set_position(uid, None)


class MemoryWatermarks:
    """Positions kept in memory: exactly once within one process only."""

    def __init__(self) -> None:
        self.positions: dict[int, McuPosition] = {}

    def load(self, uid: int) -> McuPosition | None:
        return self.positions.get(uid)

    def stage(self, uid: int, position: McuPosition) -> None:
        return None  # nothing shares the sink's transaction: `save` does the work

    def save(self, uid: int, position: McuPosition) -> None:
        self.positions[uid] = position

    def forget(self, uid: int) -> None:
        self.positions.pop(uid, None)


class FileWatermarks:
    """Positions in a small JSON file, replaced atomically and fsync'ed on every save."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._positions: dict[int, McuPosition] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self._positions = {int(k): McuPosition(int(v[0]), int(v[1])) for k, v in raw.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # A damaged file must not stop the source; duplicates are the safe failure.
            logging.getLogger(__name__).warning(
                "watermark file %s unreadable (%s); starting without", self.path, exc
            )

    def load(self, uid: int) -> McuPosition | None:
        return self._positions.get(uid)

    def stage(self, uid: int, position: McuPosition) -> None:
        return None  # a separate file cannot share the buffer's transaction

    def save(self, uid: int, position: McuPosition) -> None:
        self._positions[uid] = position
        self._write()

    def forget(self, uid: int) -> None:
        if self._positions.pop(uid, None) is not None:
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        data = json.dumps({str(k): list(v) for k, v in self._positions.items()})
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
