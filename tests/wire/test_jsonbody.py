"""The strict JSON body decoder: each fault is a BodyError naming the field, never echoing input."""

from __future__ import annotations

import contextlib
import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.admin import TokenRequest
from wire.errors import BodyError
from wire.http import EnrollRequest
from wire.jsonbody import decode_json, duplicate_key


def test_a_valid_body_decodes():
    assert decode_json(b'{"device_id": "gw-1", "ttl_s": 60}', TokenRequest) == TokenRequest(
        device_id="gw-1", ttl_s=60
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"device_id": "a", "device_id": "b"}', "$.device_id: duplicate key"),
        (b'{"device_id": "a", "\\u0064evice_id": "b"}', "$.device_id: duplicate key"),
        (b'{"device_id": "a", "ttl_s": 1.0}', "$.ttl_s: expected `int`, got `float`"),
        (b'{"device_id": "a", "ttl_s": 1e400}', "$.ttl_s: number out of range"),
        (b'{"device_id": "a", "extra": 1}', "$.extra: unknown field"),
        (b'{"device_id": "a", "\\u0000": 1}', "$.?: unknown field"),
        (b'{"ttl_s": 5}', "$: object missing required field `device_id`"),
        (b"[1]", "$: expected `object`, got `array`"),
    ],
)
def test_faults_name_the_field(raw, message):
    with pytest.raises(BodyError) as info:
        decode_json(raw, TokenRequest)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "raw",
    [b'{"device_id": "\xff"}', b"\xef\xbb\xbf{}", b'{"device_id": "a"} x', b"", b"{", b"NaN"],
)
def test_not_json_is_a_body_error(raw):
    with pytest.raises(BodyError, match=r"^\$: not a JSON document"):
        decode_json(raw, TokenRequest)


def test_duplicates_are_found_at_any_depth_even_in_fields_nobody_reads():
    raw = b'{"token": "t", "device_id": "d", "public_key": "k", "x": [1, {"a": 1, "a": 2}]}'
    with pytest.raises(BodyError, match=r"^\$\.x\[1\]\.a: duplicate key$"):
        decode_json(raw, EnrollRequest)  # tolerant of unknown fields, not of repeated keys


def test_keys_that_are_not_identifiers_are_not_echoed():
    raw = b'{"token": "t", "device_id": "d", "public_key": "k", "<b>": 1, "<b>": 2}'
    with pytest.raises(BodyError) as info:
        decode_json(raw, EnrollRequest)
    assert str(info.value) == "$.?: duplicate key"


def test_deep_nesting_is_walked_without_recursion():
    depth = 50_000
    raw = b'{"device_id": "d", "token": "t", "public_key": "k", "x": '
    raw += b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(BodyError, match=r"^\$: nested too deeply$"):
        decode_json(raw, EnrollRequest)
    assert duplicate_key(b"[" * depth + b'{"a":1,"a":2}' + b"]" * depth) is not None


def _same_as_stdlib(raw: bytes) -> bool:
    seen: list[bool] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        seen.append(len({k for k, _ in items}) != len(items))
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return any(seen)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(st.sampled_from(["a", "b", "\u00e9", '"', "\\"]), inner), max_size=4)
    ),
    max_leaves=20,
)


def _render(value: object) -> str:
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + ",".join(json.dumps(k) + ":" + _render(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_render(v) for v in value) + "]"
    return json.dumps(value)


@given(json_values)
def test_duplicate_detection_agrees_with_a_pair_by_pair_parse(value):
    raw = _render(value).encode()
    assert (duplicate_key(raw) is not None) == _same_as_stdlib(raw)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_body_error(raw):
    with contextlib.suppress(BodyError):
        decode_json(raw, TokenRequest)
    msgspec.json.decode(b"{}")  # the decoder is still usable
