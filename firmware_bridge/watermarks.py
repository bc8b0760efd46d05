"""Where the MCU source keeps, per MCU uid, the position of the last committed reading.

The guarantee is only as strong as the store: exactly-once needs the position committed in the
same transaction as the readings (the agent's buffer can do that by implementing `Watermarks`).
`FileWatermarks` is the stand-alone store: a small JSON file, replaced atomically and fsync'ed on
every save; a crash between the buffer commit and the file write repeats those readings once.
A damaged file is reported and ignored (duplicates, never loss).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Protocol


class Watermarks(Protocol):
    """The committed position per MCU uid, as durable as the buffer the readings went to."""

    def load(self, uid: int) -> tuple[int, int] | None: ...
    def save(self, uid: int, position: tuple[int, int]) -> None: ...
    def forget(self, uid: int) -> None: ...


class MemoryWatermarks:
    """Positions kept in memory: exactly-once within one process only."""

    def __init__(self) -> None:
        self.positions: dict[int, tuple[int, int]] = {}

    def load(self, uid: int) -> tuple[int, int] | None:
        return self.positions.get(uid)

    def save(self, uid: int, position: tuple[int, int]) -> None:
        self.positions[uid] = position

    def forget(self, uid: int) -> None:
        self.positions.pop(uid, None)


class FileWatermarks:
    """Positions in a small JSON file, replaced atomically and fsync'ed on every save."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._positions: dict[int, tuple[int, int]] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self._positions = {int(k): (int(v[0]), int(v[1])) for k, v in raw.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # A damaged file must not stop the source; duplicates are the safe failure.
            logging.getLogger(__name__).warning(
                "watermark file %s unreadable (%s); starting without", self.path, exc
            )

    def load(self, uid: int) -> tuple[int, int] | None:
        return self._positions.get(uid)

    def save(self, uid: int, position: tuple[int, int]) -> None:
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
