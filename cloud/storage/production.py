"""The production interface: tonnes an operator entered for a process and a window, where no
weighbridge ticket or production counter measures them (docs/figures.md, "Where production comes
from").

Written only by the production API (`ProductionStore.add_production`, tests/test_layering.py),
read by the apps (`ProductionReads`, part of `cloud.storage.reads.ReadStore`).

Invariants:
- Entries are never edited nor deleted. A correction is a new entry that `supersedes` an older
  one; an entry is superseded at most once (a unique index), so the entries in effect are those
  nobody supersedes, and the chain of corrections of one entry is a line, never a tree.
- A correction and the check that its target exists and is still in effect are one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class NewEntry:
    process: str
    from_ms: int
    to_ms: int
    tonnes: float
    note: str
    actor: str
    supersedes: int | None = None


@dataclass(frozen=True, slots=True)
class ProductionRecord:
    entry_id: int
    process: str
    from_ms: int
    to_ms: int
    tonnes: float
    note: str
    actor: str
    entered_ms: int
    supersedes: int | None
    superseded_by: int | None  # the correction that replaced it; None while it is in effect


def records(rows: list[tuple[Any, ...]]) -> list[ProductionRecord]:
    """Rows of the `production_sql` selects as records."""
    return [
        ProductionRecord(
            int(r[0]),
            str(r[1]),
            int(r[2]),
            int(r[3]),
            float(r[4]),
            str(r[5]),
            str(r[6]),
            int(r[7]),
            None if r[8] is None else int(r[8]),
            None if r[9] is None else int(r[9]),
        )
        for r in rows
    ]


class ProductionReads(Protocol):
    async def list_production(
        self, from_ms: int, to_ms: int, *, in_effect_only: bool
    ) -> list[ProductionRecord]:
        """Entries whose window overlaps [from_ms, to_ms), oldest first; only those nobody
        supersedes when `in_effect_only`."""


class ProductionStore(ProductionReads, Protocol):
    async def add_production(self, entry: NewEntry, now_ms: int) -> int | None:
        """Store an entry; its id. None (nothing stored) when it supersedes an entry that does
        not exist or is already superseded."""
