"""The strict RFC 8941 structured-field subset that Content-Digest and signatures share.

Sans-I/O: a str in, values out; values in, a str out.
- Supported: a dictionary whose members are items or inner lists; bare items sf-integer, sf-string,
  sf-token (`Token`), sf-boolean and sf-binary (`bytes`); parameters on items and inner lists.
- Refused: sf-decimal, sf-date, sf-displaystring, non-ASCII input, and duplicate dictionary or
  parameter keys (RFC 8941 lets the last one win; a security field must not be read two ways).
- Caps come first: the field length (in bytes: non-ASCII is refused before it is measured), the
  members of the dictionary and the items of each inner list.
- Every failure is `SignatureError` naming the field, the offset and the reason. No other
  exception leaves this module, for any input (property-tested with arbitrary text).
- `serialize_*` write the RFC 8941 canonical form; parse then serialize is how the signature base
  rebuilds `@signature-params` byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple, NoReturn

from wire.errors import SignatureError

_INTEGER_MAX = 999_999_999_999_999  # RFC 8941: at most 15 digits


class Token(str):
    """An sf-token; a distinct type so that it serialises back without quotes."""

    __slots__ = ()


# bool is tested before int everywhere: it is an int subclass. Token is a str subclass.
BareItem = int | bool | str | bytes
Params = tuple[tuple[str, BareItem], ...]


class Item(NamedTuple):
    value: BareItem
    params: Params = ()


class InnerList(NamedTuple):
    items: tuple[Item, ...]
    params: Params = ()


Member = Item | InnerList
Dictionary = tuple[tuple[str, Member], ...]

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_NUMBER = re.compile(r"-?([0-9]+)(\.[0-9]*)?")
_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_STRING_CHARS = re.compile(r"[\x20-\x7e]*")
_UNESCAPE = re.compile(r"\\(.)")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_BINARY = re.compile(r":([A-Za-z0-9+/=]*):")
_BOOLEAN = re.compile(r"\?([01])")
_SP = re.compile(" *")
_OWS = re.compile("[ \t]*")


class _ParseError(Exception):
    """Internal: carries a reason and offset up to parse_dictionary, which adds the field name."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason, pos)
        self.reason = reason
        self.pos = pos


def _fail(reason: str, pos: int) -> NoReturn:
    raise _ParseError(reason, pos)


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return pos if match is None else match.end()


def parse_dictionary(
    text: str, *, field: str, max_length: int, max_members: int, max_inner_items: int = 0
) -> Dictionary:
    """Parse an RFC 8941 dictionary field value, in member order; raise SignatureError if invalid.

    `max_inner_items` caps each inner list (0 refuses inner lists). An empty value is an empty
    dictionary; the caller decides whether that is acceptable.
    """
    if not isinstance(text, str):
        raise SignatureError(f"{field}: not a str")
    if not text.isascii():
        raise SignatureError(f"{field}: non-ASCII characters")
    if len(text) > max_length:
        raise SignatureError(f"{field}: {len(text)} bytes, over the cap of {max_length}")
    try:
        return _dictionary(text, max_members, max_inner_items)
    except _ParseError as exc:
        raise SignatureError(f"{field}: {exc.reason} at offset {exc.pos}") from None


def _dictionary(text: str, max_members: int, max_inner_items: int) -> Dictionary:
    end = len(text)
    pos = _skip(_SP, text, 0)
    members: list[tuple[str, Member]] = []
    names: set[str] = set()
    while pos < end:
        match = _KEY.match(text, pos)
        if match is None:
            _fail("expected a key", pos)
        name = match.group()
        if name in names:
            _fail(f"duplicate key {name!r}", pos)
        if len(members) == max_members:
            _fail(f"more than {max_members} member(s)", pos)
        pos = match.end()
        member: Member
        if text.startswith("=(", pos):
            if max_inner_items == 0:
                _fail("inner list not allowed here", pos + 1)
            member, pos = _inner_list(text, pos + 1, max_inner_items)
        elif text.startswith("=", pos):
            value, pos = _bare_item(text, pos + 1)
            params, pos = _params(text, pos)
            member = Item(value, params)
        else:
            params, pos = _params(text, pos)
            member = Item(value=True, params=params)
        names.add(name)
        members.append((name, member))
        pos = _skip(_OWS, text, pos)
        if pos == end:
            break
        if text[pos] != ",":
            _fail("expected ','", pos)
        pos = _skip(_OWS, text, pos + 1)
        if pos == end:
            _fail("trailing ','", pos)
    return tuple(members)


def _inner_list(text: str, pos: int, max_items: int) -> tuple[InnerList, int]:
    pos += 1  # the "("
    items: list[Item] = []
    while True:
        pos = _skip(_SP, text, pos)
        if text.startswith(")", pos):
            params, pos = _params(text, pos + 1)
            return InnerList(tuple(items), params), pos
        if len(items) == max_items:
            _fail(f"more than {max_items} inner-list item(s)", pos)
        value, pos = _bare_item(text, pos)
        params, pos = _params(text, pos)
        items.append(Item(value, params))
        if not text.startswith((" ", ")"), pos):
            _fail("expected ' ' or ')' in inner list", pos)


def _params(text: str, pos: int) -> tuple[Params, int]:
    params: list[tuple[str, BareItem]] = []
    while text.startswith(";", pos):
        pos = _skip(_SP, text, pos + 1)
        match = _KEY.match(text, pos)
        if match is None:
            _fail("expected a parameter key", pos)
        name = match.group()
        if any(name == seen for seen, _ in params):
            _fail(f"duplicate parameter {name!r}", pos)
        pos = match.end()
        value: BareItem = True
        if text.startswith("=", pos):
            value, pos = _bare_item(text, pos + 1)
        params.append((name, value))
    return tuple(params), pos


def _bare_item(text: str, pos: int) -> tuple[BareItem, int]:
    first = text[pos : pos + 1]
    if first == '"':
        match = _STRING.match(text, pos)
        if match is None:
            _fail("invalid sf-string", pos)
        raw = match.group(1)
        return (_UNESCAPE.sub(r"\1", raw) if "\\" in raw else raw), match.end()
    if first == "-" or "0" <= first <= "9":
        match = _NUMBER.match(text, pos)
        if match is None:
            _fail("invalid sf-integer", pos)
        if match.group(2) is not None:
            _fail("sf-decimal not supported", pos)
        if len(match.group(1)) > 15:
            _fail("sf-integer over 15 digits", pos)
        return int(match.group()), match.end()
    if first == ":":
        match = _BINARY.match(text, pos)
        if match is None:
            _fail("invalid sf-binary", pos)
        encoded = match.group(1)
        try:
            raw_bytes = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            _fail("invalid base64 in sf-binary", pos)
        # One spelling per value: padding present, unused bits zero.
        if base64.b64encode(raw_bytes).decode("ascii") != encoded:
            _fail("non-canonical base64 in sf-binary", pos)
        return raw_bytes, match.end()
    if first == "?":
        match = _BOOLEAN.match(text, pos)
        if match is None:
            _fail("invalid sf-boolean", pos)
        return match.group(1) == "1", match.end()
    if first == "*" or first.isalpha():
        match = _TOKEN.match(text, pos)
        if match is None:  # pragma: no cover - the first character always matches
            _fail("invalid sf-token", pos)
        return Token(match.group()), match.end()
    if first == "":
        _fail("unexpected end", pos)
    _fail(f"unexpected {first!r}", pos)


def serialize_bare_item(value: BareItem) -> str:
    """The canonical RFC 8941 text of one bare item; SignatureError if it has none."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if not -_INTEGER_MAX <= value <= _INTEGER_MAX:
            raise SignatureError(f"integer {value} out of the sf-integer range")
        return str(value)
    if isinstance(value, Token):
        if _TOKEN.fullmatch(value) is None:
            raise SignatureError(f"{value!r} is not an sf-token")
        return str(value)
    if isinstance(value, str):
        if _STRING_CHARS.fullmatch(value) is None:
            raise SignatureError(f"{value!r} has characters an sf-string cannot hold")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise SignatureError(f"{type(value).__name__} is not a supported bare item")


def serialize_key(key: str) -> str:
    """`key` itself if it is a valid RFC 8941 key, else SignatureError."""
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise SignatureError(f"{key!r} is not a valid structured-field key")
    return key


def serialize_params(params: Params) -> str:
    return "".join(
        ";" + serialize_key(name) + ("" if value is True else "=" + serialize_bare_item(value))
        for name, value in params
    )


def serialize_item(item: Item) -> str:
    return serialize_bare_item(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    return (
        "("
        + " ".join(serialize_item(i) for i in inner.items)
        + ")"
        + serialize_params(inner.params)
    )


def serialize_dictionary(members: Dictionary) -> str:
    """The canonical text of a dictionary; a member whose value is True shows its key alone."""
    out = []
    for key, member in members:
        if isinstance(member, InnerList):
            out.append(serialize_key(key) + "=" + serialize_inner_list(member))
        elif member.value is True:
            out.append(serialize_key(key) + serialize_params(member.params))
        else:
            out.append(serialize_key(key) + "=" + serialize_item(member))
    return ", ".join(out)
