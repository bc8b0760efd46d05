"""The one log line format of every Tierless process (the agent, the receiver with uvicorn's own
loggers, the tools): text or JSON, each line with its time.

Text: `2026-12-07T04:35:12.345Z edge-agent INFO agent.uplink: message`: the time in UTC with
milliseconds (so lines from a gateway and the receiver sort together), the program, the level,
the logger, the message; an exception's traceback follows on the next lines.

JSON (`--log-format json`): one object per line with the keys `ts`, `prog`, `level`, `logger`,
`msg` and, for an exception, `exc`; for log shippers that parse lines.

`configure` replaces the root logger's handlers: only entry points call it.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
import time
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


def _utc(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record)} {self.prog} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": _utc(record),
            "prog": self.prog,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


def formatter(prog: str, fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter(prog) if fmt is LogFormat.JSON else TextFormatter(prog)


def configure(prog: str, level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Route every logger (uvicorn's too: they propagate to the root) through one handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(prog, fmt))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
