"""`wire.enrollment`: the token format and the rotation proof-of-possession message."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.receiver import tokens as cloud_tokens
from wire.enrollment import (
    format_token,
    parse_token,
    rotate_pop_message,
    token_hash,
)
from wire.errors import TokenFormatError

device_ids = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=128
)


@given(device_ids, st.integers(0, 10**15 - 1), st.binary(min_size=32, max_size=32))
def test_round_trip(device_id, expires_ms, secret):
    token = format_token(device_id, expires_ms, "0123456789abcdef", secret)
    parsed = parse_token(token)
    assert (parsed.device_id, parsed.expires_ms, parsed.token_id) == (
        device_id,
        expires_ms,
        "0123456789abcdef",
    )
    assert parsed.token_hash == token_hash(token)


def test_tokens_the_receiver_issues_parse():
    token, record = cloud_tokens.issue_token("gw/1 ü", now_ms=1_790_000_000_000, ttl_ms=60_000)
    parsed = parse_token(token)
    assert parsed.device_id == "gw/1 ü"
    assert parsed.expires_ms == record.expires_ms
    assert parsed.token_id == record.token_id
    assert token_hash(token) == record.token_hash


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_token_format_error(text):
    with contextlib.suppress(TokenFormatError):
        parse_token(text)


GOOD = "tle1.Z3ctMQ.1790000000000.0123456789abcdef." + "A" * 43


@pytest.mark.parametrize(
    "bad",
    [
        "",
        GOOD + "\n",  # callers strip; the hash covers the exact string
        GOOD.replace("tle1", "tle2"),
        GOOD.replace(".0123456789abcdef.", ".0123456789ABCDEF."),
        GOOD.replace("1790000000000", "17900000000000000"),
        GOOD[:-1],  # secret one character short
        GOOD + "A",
        GOOD.replace("Z3ctMQ", "Z3ctMQ="),  # padding is not base64url here
        GOOD.replace("Z3ctMQ", "_w"),  # not UTF-8
        GOOD + ".x",
    ],
)
def test_not_tokens(bad):
    with pytest.raises(TokenFormatError):
        parse_token(bad)


def test_format_refuses_bad_parts():
    with pytest.raises(TokenFormatError):
        format_token("gw", 1, "XYZ", bytes(32))
    with pytest.raises(TokenFormatError):
        format_token("gw", 1, "0123456789abcdef", bytes(31))
    with pytest.raises(TokenFormatError):
        format_token("gw", -1, "0123456789abcdef", bytes(32))


def test_rotate_pop_message_bytes():
    assert rotate_pop_message("gw-1", "old", "new") == b"tierless-rotate-v1|gw-1|old|new"
