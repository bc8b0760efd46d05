"""One log line format for every process: a UTC time first, or one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from hostio.logformat import LogFormat, configure

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_text_lines_start_with_the_utc_time(restore_root) -> None:
    out = io.StringIO()
    configure("edge-agent", "info", LogFormat.TEXT, out)
    logging.getLogger("agent.uplink").info("sent %d", 3)
    logging.getLogger("agent.uplink").debug("not shown")
    line = out.getvalue()
    assert re.fullmatch(rf"{STAMP} edge-agent INFO agent\.uplink: sent 3\n", line), line


def test_json_lines_are_one_object_each_with_the_exception(restore_root) -> None:
    out = io.StringIO()
    configure("edge-cloud", "debug", LogFormat.JSON, out)
    # (not uvicorn's own logger name: an in-process uvicorn of another test may have configured
    # it not to propagate)
    log = logging.getLogger("tierless.test.logformat")
    log.debug('a "quoted"\nline')
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert re.fullmatch(STAMP, first["ts"])
    assert (first["prog"], first["level"], first["logger"], first["msg"]) == (
        "edge-cloud",
        "DEBUG",
        "tierless.test.logformat",
        'a "quoted"\nline',
    )
    assert "ValueError: boom" in second["exc"]
