"""Query-string and path parameters of the read API, parsed strictly once per request.

Rules (docs/api.md "Parameters"); every fault is `400 bad_request` whose message names the
parameter, and no value ever reaches the store unchecked:
- The raw query string is split on `&`, each part on the first `=`, `+` is a space, and the
  percent-decoded bytes must be UTF-8. A parameter given twice is refused (which one would win
  is a parser's accident, and two readers must not disagree).
- Text values must be printable: no NUL, no other control characters (PostgreSQL cannot store
  a NUL in text, and no name the receiver stores holds one), at most `MAX_TEXT_LEN` characters.
- Integers are plain ASCII decimal digits (no sign, no `_`, no spaces, no other scripts' digits,
  no fraction or exponent) within the documented range of the parameter; times lie in
  [0, `TIME_MAX_MS`], the latest time a reading may carry plus one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from starlette.requests import Request

from cloud import responses
from cloud.errors import RejectedError
from wire.models import MAX_NAME_LEN, MAX_TS_MS

MAX_TEXT_LEN = 1024  # a filter is a name (MAX_NAME_LEN); a comma list of tags is a bit longer
TIME_MAX_MS = MAX_TS_MS + 1  # to_ms is exclusive: this reads up to the last valid reading time
ID_MAX = 2**63 - 1  # the stores' 64-bit integer columns
_DIGITS = re.compile(r"[0-9]{1,19}")
_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")


def bad(message: str) -> RejectedError:
    """A 400 whose message is ours: it names the parameter, never quotes its value."""
    return RejectedError(400, responses.bad_request(message), reason=message)


def shown(name: str) -> str:
    return repr(name) if _NAME.fullmatch(name) else "a parameter"


def _text(raw: bytes, what: str) -> str:
    try:
        text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"{what} is not UTF-8") from exc
    return text


def query(request: Request) -> dict[str, str]:
    """The query parameters by name, each checked as text; 400 naming the first fault."""
    out: dict[str, str] = {}
    raw = request.scope.get("query_string", b"")
    for part in raw.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        name = _text(raw_name, "a parameter name")
        if not name.isprintable() or len(name) > MAX_NAME_LEN:
            raise bad("a parameter name contains control characters or is too long")
        value = _text(raw_value, f"parameter {shown(name)}")
        if name in out:
            raise bad(f"parameter {shown(name)} given more than once")
        out[name] = value
    for name, value in out.items():
        if len(value) > MAX_TEXT_LEN:
            raise bad(f"parameter {shown(name)} longer than {MAX_TEXT_LEN} characters")
        if not value.isprintable():
            raise bad(f"parameter {shown(name)} contains control characters")
    return out


def integer(
    q: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int = ID_MAX
) -> int:
    """`q[name]` as an integer in [minimum, maximum], `default` when absent or empty."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    return parse_int(raw, name, minimum=minimum, maximum=maximum)


def parse_int(raw: str, name: str, *, minimum: int, maximum: int) -> int:
    if _DIGITS.fullmatch(raw) is None:
        raise bad(f"{name} must be a decimal integer {minimum}..{maximum}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise bad(f"{name} out of range {minimum}..{maximum}")
    return value


def time_ms(q: Mapping[str, str], name: str, default: int) -> int:
    """An epoch-millisecond parameter in [0, TIME_MAX_MS]."""
    return integer(q, name, default, maximum=TIME_MAX_MS)


def series_id(request: Request) -> int:
    """The `{series_id}` of the path: a positive 64-bit integer."""
    raw: str = request.path_params["series_id"]
    return parse_int(raw, "series_id", minimum=1, maximum=ID_MAX)
