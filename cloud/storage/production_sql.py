"""The production table's statements, shared by both backends (`{p}`: the placeholder)."""

from __future__ import annotations

_SELECT = (
    "SELECT e.id, e.process, e.from_ms, e.to_ms, e.tonnes, e.note, e.actor, e.entered_ms,"
    " e.supersedes, (SELECT c.id FROM production_entry c WHERE c.supersedes = e.id)"
    " FROM production_entry e WHERE e.from_ms < {p} AND e.to_ms > {p}"
)
LIST = _SELECT + " ORDER BY e.id"
_NOT_SUPERSEDED = " AND NOT EXISTS (SELECT 1 FROM production_entry c WHERE c.supersedes = e.id)"
LIST_IN_EFFECT = _SELECT + _NOT_SUPERSEDED + " ORDER BY e.id"
IN_EFFECT = (
    "SELECT 1 FROM production_entry e WHERE e.id = {p}"
    " AND NOT EXISTS (SELECT 1 FROM production_entry c WHERE c.supersedes = e.id)"
)
INSERT = (
    "INSERT INTO production_entry (process, from_ms, to_ms, tonnes, note, actor, entered_ms,"
    " supersedes) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
