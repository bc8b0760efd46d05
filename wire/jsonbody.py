"""The one decoding path for JSON request bodies: strict, typed, and explicit about what is wrong.

`decode_json(raw, kind)` returns `kind` (a msgspec struct of the HTTP contract) or raises
`BodyError` whose message names the field and the fault. Pure: no I/O.

The rules, beyond msgspec's typed decoding (which already refuses non-UTF-8 bytes, malformed
JSON, trailing data, a float where an int is expected, numbers that overflow a float, and an
unknown field where the struct forbids them; nesting past the interpreter's recursion limit is
refused too):
- No object may repeat a key, at any depth, whether the struct reads it or not. msgspec (like
  most JSON parsers) keeps the last value of a repeated key, so `{"ttl_s": 1, "ttl_s": 9}` would
  mean whatever the last writer wanted; two readers of one body must never see different values.
  Keys are compared after unescaping (`"a"` and `"\\u0061"` are the same key).
- Messages never echo raw input: a key is shown only when it is a plain identifier
  (`[A-Za-z0-9_-]{1,64}`), otherwise as `?`.

The duplicate check walks the body once with an explicit stack (no recursion, so any nesting
depth msgspec accepted is fine), after msgspec has accepted the document's syntax.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from wire.errors import BodyError

_T = TypeVar("_T")

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SAFE_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<name>.*)`(?: - at `(?P<at>.*)`)?")
_AT = re.compile(r"(?P<what>.*) - at `(?P<at>[^`]*)`")


def decode_json(raw: bytes, kind: type[_T]) -> _T:
    """`raw` decoded strictly as `kind`; BodyError naming the field and the fault otherwise."""
    try:
        value = msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BodyError(_validation_message(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise BodyError(f"$: not a JSON document ({_plain(str(exc))})") from exc
    except RecursionError as exc:  # msgspec's nesting bound (the interpreter's recursion limit)
        raise BodyError("$: nested too deeply") from exc
    where = duplicate_key(raw)
    if where is not None:
        raise BodyError(f"{where}: duplicate key")
    return value


def duplicate_key(raw: bytes) -> str | None:
    """The path of the first key repeated within one object of the JSON text `raw`, or None.

    `raw` must be JSON that a parser accepted; on anything else the answer is unspecified but
    this never raises (other than BodyError for a key that is not a valid JSON string)."""
    # One frame per open container: the keys seen (None for an array) and the current key or
    # index as a path segment. The path is joined only when a duplicate is found.
    stack: list[tuple[set[str] | None, list[str]]] = []
    expect_key = False
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x22:  # '"'
            match = _STRING.match(raw, i)
            if match is None:
                raise BodyError("$: not a JSON document (unterminated string)")
            keys = stack[-1][0] if stack else None
            if expect_key and keys is not None:
                current = stack[-1][1]
                try:
                    key = msgspec.json.decode(match.group(), type=str)
                except msgspec.MsgspecError as exc:
                    raise BodyError(f"{_path(stack)}: invalid key") from exc
                current[0] = _segment(key)
                if key in keys:
                    return _path(stack)
                keys.add(key)
                expect_key = False
            i = match.end()
            continue
        if c == 0x7B:  # '{'
            stack.append((set(), [""]))
            expect_key = True
        elif c == 0x5B:  # '['
            stack.append((None, ["[0]"]))
            expect_key = False
        elif c in (0x7D, 0x5D):  # '}' ']'
            if stack:
                stack.pop()
            expect_key = False
        elif c == 0x2C and stack:  # ','
            keys, current = stack[-1]
            if keys is None:
                current[0] = f"[{int(current[0][1:-1]) + 1}]"
            else:
                expect_key = True
        i += 1
    return None


def _path(stack: list[tuple[set[str] | None, list[str]]]) -> str:
    return "$" + "".join(current[0] for _, current in stack)


def _segment(key: str) -> str:
    return f".{key}" if _SAFE_KEY.fullmatch(key) else ".?"


def _plain(text: str) -> str:
    """msgspec's message with any quoted input replaced (its messages quote names in `...`)."""
    return re.sub(
        r"`[^`]*`", lambda m: m.group() if _SAFE_KEY.fullmatch(m.group()[1:-1]) else "?", text
    )


def _validation_message(text: str) -> str:
    unknown = _UNKNOWN_FIELD.fullmatch(text)
    if unknown is not None:
        name = unknown["name"]
        shown = name if _SAFE_KEY.fullmatch(name) else "?"
        return f"{unknown['at'] or '$'}.{shown}: unknown field"
    located = _AT.fullmatch(text)
    if located is not None:
        return f"{located['at']}: {located['what'][:1].lower()}{located['what'][1:]}"
    return f"$: {text[:1].lower()}{text[1:]}"
