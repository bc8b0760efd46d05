"""Errors of the demo. One class: `DemoError` — an expected failure (a port in use, a binary
missing, a process that would not start), printed as one line `demo: <message>`, never with a
traceback; the demo stops what it started and exits 3."""

from __future__ import annotations


class DemoError(Exception):
    """Something the user can fix or retry; the message says what."""
