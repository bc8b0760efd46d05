"""Content-Digest (RFC 9530) and the strict RFC 8941 dictionary subset in wire.digest."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.digest import content_digest, verify_content_digest
from wire.errors import SignatureError
from wire.structured import (
    InnerList,
    Item,
    Token,
    parse_dictionary,
    serialize_bare_item,
    serialize_dictionary,
)

# RFC 9530 section 2 / RFC 9421 appendix B.2: the request body and its digests.
RFC_BODY = b'{"hello": "world"}'
RFC_SHA256 = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
RFC_SHA512 = (
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+"
    "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
)


def _parse(text: str, **caps: int):
    return parse_dictionary(
        text,
        field="test",
        max_length=caps.get("max_length", 1024),
        max_members=caps.get("max_members", 8),
        max_inner_items=caps.get("max_inner_items", 16),
    )


def _typed(value):
    """Values with their types, so that True != 1 and Token("a") != "a" in comparisons."""
    if isinstance(value, tuple):
        return (type(value).__name__, tuple(_typed(v) for v in value))
    return (type(value).__name__, value)


def test_content_digest_matches_rfc9530_example():
    assert content_digest(RFC_BODY) == RFC_SHA256
    verify_content_digest(RFC_SHA256, RFC_BODY)


def test_rfc_sha512_value_is_what_the_rfc_says():
    # Guards the constant used below: the sha-512 member is a real digest of the same body.
    encoded = base64.b64encode(hashlib.sha512(RFC_BODY).digest()).decode()
    assert f"sha-512=:{encoded}:" == RFC_SHA512


@pytest.mark.parametrize(
    "header",
    [
        f"{RFC_SHA512}, {RFC_SHA256}",
        f"{RFC_SHA256}, {RFC_SHA512}",
        f"  {RFC_SHA256}  ",
        f"md5=:AAAAAAAAAAAAAAAAAAAAAA==:,\t{RFC_SHA256}",
    ],
)
def test_other_algorithms_are_ignored_beside_sha256(header: str):
    verify_content_digest(header, RFC_BODY)


def test_body_changed_is_refused():
    with pytest.raises(SignatureError, match="does not match"):
        verify_content_digest(RFC_SHA256, b'{"hello": "World"}')
    with pytest.raises(SignatureError, match="does not match"):
        verify_content_digest(RFC_SHA256, RFC_BODY + b" ")


@pytest.mark.parametrize(
    "header",
    [
        RFC_SHA512,  # only a (stronger, but unchecked) algorithm
        "md5=:AAAAAAAAAAAAAAAAAAAAAA==:",
        "sha=:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
        "",
        "   ",
    ],
)
def test_without_sha256_member_is_refused(header: str):
    with pytest.raises(SignatureError, match="no sha-256 member"):
        verify_content_digest(header, RFC_BODY)


@pytest.mark.parametrize(
    "header",
    [
        "sha-256",  # boolean member
        "sha-256=abc",  # token
        "sha-256=1",
        '"sha-256"=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:',
        "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE:",  # padding missing
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",  # unterminated
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPF=:",  # unused bits set
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBP==:",  # 31 bytes
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:;q=1",  # parameters
        "sha-256=(:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:)",  # inner list
        f"{RFC_SHA256}, {RFC_SHA256}",  # duplicate key
        f"{RFC_SHA256},",  # trailing comma
        f"{RFC_SHA256};",
        f"{RFC_SHA256} x",
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",  # keys are lowercase
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\u00e9",
        "a=1, " * 300 + RFC_SHA256,  # over the length cap
        ", ".join(f"k{i}=1" for i in range(8)) + ", " + RFC_SHA256,  # over the member cap
    ],
)
def test_malformed_headers_are_refused(header: str):
    with pytest.raises(SignatureError):
        verify_content_digest(header, RFC_BODY)


def test_non_str_header_and_non_bytes_body_are_refused():
    with pytest.raises(SignatureError):
        verify_content_digest(RFC_SHA256.encode(), RFC_BODY)  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        verify_content_digest(RFC_SHA256, RFC_BODY.decode())  # type: ignore[arg-type]


@given(st.text(max_size=200), st.binary(max_size=64))
def test_arbitrary_text_raises_only_signature_error(header: str, body: bytes):
    with contextlib.suppress(SignatureError):
        verify_content_digest(header, body)


_SF_ALPHABET = 'sha-256=:/+AZaz09 \t,;()"\\?*.-_'


@given(st.text(alphabet=_SF_ALPHABET, max_size=120))
def test_sf_shaped_text_raises_only_signature_error(text: str):
    try:
        members = _parse(text)
    except SignatureError:
        return
    # Whatever parses re-serialises canonically and parses back to the same values.
    assert _typed(_parse(serialize_dictionary(members))) == _typed(members)


def test_every_prefix_parses_or_raises_signature_error():
    text = 'sig1=("@method" "content-digest");created=1;keyid="k\\"q";v=?1;t=tok/en:1, b=:AAE=:;x'
    for end in range(len(text) + 1):
        with contextlib.suppress(SignatureError):
            _parse(text[:end])


def test_parse_keeps_types_and_order():
    members = _parse('b=?0, a=(1 "x" tok);p=:AA==:, c;q="s\\\\", d=-12')
    assert _typed(members) == _typed(
        (
            ("b", Item(value=False)),
            ("a", InnerList((Item(1), Item("x"), Item(Token("tok"))), (("p", b"\x00"),))),
            ("c", Item(True, (("q", "s\\"),))),
            ("d", Item(-12)),
        )
    )


def test_serialize_is_canonical():
    text = '  a=1 ,\tb=(  "x"   "y"  );p , c;q=?1  '
    assert serialize_dictionary(_parse(text)) == 'a=1, b=("x" "y");p, c;q'


@pytest.mark.parametrize(
    "text",
    [
        "a=1.5",  # decimal
        "a=@1659578233",  # date
        'a=%"x"',  # display string
        "a=1234567890123456",  # 16 digits
        "a=-",
        "a=(1 2)x",
        "a=(1  2",
        'a="\\x"',  # only \" and \\ may be escaped
        'a="\t"',
        "a;p;p",  # duplicate parameter
        "a,a",
        "a=,",
        "1a=1",
        "a=?2",
        "a=:=AAA:",
    ],
)
def test_parser_refusals(text: str):
    with pytest.raises(SignatureError):
        _parse(text)


def test_caps():
    with pytest.raises(SignatureError, match="inner-list"):
        _parse("a=(1 2 3)", max_inner_items=2)
    with pytest.raises(SignatureError, match="inner list not allowed"):
        _parse("a=(1)", max_inner_items=0)
    with pytest.raises(SignatureError, match="member"):
        _parse("a, b", max_members=1)
    with pytest.raises(SignatureError, match="over the cap"):
        _parse("a" * 11, max_length=10)


def test_serialize_refuses_what_has_no_sf_form():
    for value in (10**15, "é", "a\nb", Token("1x"), 1.5):
        with pytest.raises(SignatureError):
            serialize_bare_item(value)  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        serialize_dictionary((("Bad", Item(1)),))


_keys = st.from_regex(r"[a-z*][a-z0-9_\-.*]{0,6}", fullmatch=True)
_bare = st.one_of(
    st.integers(-(10**15) + 1, 10**15 - 1),
    st.booleans(),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    st.from_regex(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]{0,6}", fullmatch=True).map(Token),
    st.binary(max_size=12),
)
_params = st.dictionaries(_keys, _bare, max_size=3).map(lambda d: tuple(d.items()))
_items = st.builds(Item, _bare, _params)
_members = st.one_of(_items, st.builds(InnerList, st.lists(_items, max_size=4).map(tuple), _params))


@given(st.dictionaries(_keys, _members, max_size=4).map(lambda d: tuple(d.items())))
def test_serialize_then_parse_round_trips(members):
    assert _typed(_parse(serialize_dictionary(members), max_length=10_000)) == _typed(members)
