"""How long raw readings are kept, per medium, and the store's maintenance that applies it.

A `Retention` is configuration (`edge-cloud serve --retention electricity=400,water=90,*=730`,
days): a medium not named uses `*`, and without `*` readings of unnamed media are kept forever.
Only raw readings expire: the hourly and daily roll-ups (`cloud.storage.rollups`) are the
long-range history and are kept.

Maintenance (`Store.maintain`, run by the receiver's maintenance task in one process):
- PostgreSQL: monthly partitions exist from last month to `months_ahead` months ahead
  (`ensure_reading_partitions`, migration 0008); a partition whose whole range is older than
  the LONGEST retention of any medium is dropped whole (only when `*` is set: otherwise some
  medium keeps its rows forever); then, per rule, older rows are deleted (a medium with a
  shorter retention than the longest). SQLite: the deletes.
- Both: one `DELETE` per rule, joined to `series` by medium; it runs in the maintenance task's
  own transaction, never in a batch's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.errors import ConfigError

DAY_MS = 86_400_000
DEFAULT_KEY = "*"


@dataclass(frozen=True, slots=True)
class Retention:
    """Days of raw readings kept per medium; `default_days` for the others (None: forever)."""

    by_medium: tuple[tuple[str, int], ...] = ()
    default_days: int | None = None
    months_ahead: int = 3  # PostgreSQL partitions created ahead of now

    @property
    def longest_days(self) -> int | None:
        """The longest retention of any medium; None when some medium is kept forever."""
        if self.default_days is None:
            return None
        return max([self.default_days, *(d for _, d in self.by_medium)])


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    rows_deleted: int = 0


def parse_retention(text: str) -> Retention:
    """`medium=days,…,*=days` -> Retention; ConfigError naming every bad item."""
    problems = []
    by_medium: dict[str, int] = {}
    default: int | None = None
    for n, item in enumerate(i.strip() for i in text.split(",")):
        if not item:
            continue
        name, sep, days_s = item.partition("=")
        name = name.strip()
        try:
            days = int(days_s)
        except ValueError:
            days = 0
        if not sep or not name or days < 1:
            problems.append(
                f"retention item {n + 1} ({item!r}): expected medium=DAYS with DAYS >= 1"
            )
        elif name == DEFAULT_KEY:
            default = days
        elif name in by_medium:
            problems.append(f"retention item {n + 1}: medium {name!r} given twice")
        else:
            by_medium[name] = days
    if problems:
        raise ConfigError(problems)
    return Retention(tuple(sorted(by_medium.items())), default)


def delete_statements(retention: Retention, now_ms: int, ph: str) -> list[tuple[str, list[object]]]:
    """One DELETE per rule, for rows older than the rule's cutoff (SQL and parameters)."""
    out: list[tuple[str, list[object]]] = []
    delete = (
        "DELETE FROM reading WHERE ts_ms < {p} AND series_id IN"
        " (SELECT id FROM series WHERE {where})"
    )
    for medium, days in retention.by_medium:
        out.append((delete.format(p=ph, where=f"medium = {ph}"), [now_ms - days * DAY_MS, medium]))
    if retention.default_days is not None:
        named = [m for m, _ in retention.by_medium]
        where = f"medium NOT IN ({', '.join([ph] * len(named))})" if named else "TRUE"
        out.append(
            (delete.format(p=ph, where=where), [now_ms - retention.default_days * DAY_MS, *named])
        )
    return out
