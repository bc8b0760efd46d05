"""Production entered by operators (`POST /v1/production`, `GET /v1/production`): tonnes of a
process over a window, where no weighbridge ticket or production counter measures them.
docs/api.md and docs/figures.md ("Where production comes from") define every field."""

from __future__ import annotations

import msgspec

PRODUCTION_PATH = "/v1/production"


class ProductionIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An entry, or with `supersedes` the correction of one (entries are never edited)."""

    process: str
    from_ms: int
    to_ms: int
    tonnes: float
    actor: str  # who entered it: the audit trail's name
    note: str = ""
    supersedes: int | None = None


class ProductionView(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    process: str
    from_ms: int
    to_ms: int
    tonnes: float
    actor: str
    note: str
    entered_ms: int
    supersedes: int | None
    superseded_by: int | None  # the correction that replaced it; null while in effect


class ProductionList(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[ProductionView]
