"""Source names on third-party log lines.

pymodbus logs through its own logger (`pymodbus.logging`) with no idea which of our sources it
is working for, so "Failed to connect" could be any bus. A source calls `name_foreign_logs(name)`
at the top of its `run()`: the name goes into a context variable of its task (and of every
callback that task's transports schedule, which copy the context when they are registered), and
a filter on the foreign loggers prefixes each line logged there with `<name>: `, the same shape
as our own lines. Lines logged outside any source's task are left as they are.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

FOREIGN_LOGGERS = ("pymodbus.logging",)
_SOURCE: ContextVar[str] = ContextVar("tierless_source", default="")


class SourceNameFilter(logging.Filter):
    """Prefixes a record with the name of the source whose task logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = _SOURCE.get()
        if name and not getattr(record, "tierless_source", ""):
            prefix = name.replace("%", "%%") if record.args else name
            record.msg = f"{prefix}: {record.msg}"
            record.tierless_source = name
        return True


def name_foreign_logs(name: str, loggers: tuple[str, ...] = FOREIGN_LOGGERS) -> None:
    """Name this task's source on the foreign loggers' lines (the filter is installed once)."""
    _SOURCE.set(name)
    for logger_name in loggers:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, SourceNameFilter) for f in logger.filters):
            logger.addFilter(SourceNameFilter())
