"""Malformed input is a 400 naming the field or parameter, never a 500, on both stores
(issue 12, observed 4): duplicate JSON keys, out-of-range integers, control characters,
non-UTF-8, floats where integers belong."""

from __future__ import annotations

import json

import pytest

from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, Receiver

READ = {"authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}


def assert_bad(r, *words: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == "bad_request"
    for word in words:
        assert word in body["message"], (word, body)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"device_id": "gw-1", "ttl_s": 60, "device_id": "gw-2"}', ("$.device_id", "duplicate")),
        (b'{"device_id": "gw-1", "ttl_s": 60.0}', ("$.ttl_s", "float")),
        (b'{"device_id": "gw-1", "ttl_s": 1e999}', ("$.ttl_s", "range")),
        (b'{"device_id": "gw-1", "ttl_s": 18446744073709551616}', ("ttl_s",)),
        (b'{"device_id": "gw\\u0000", "ttl_s": 60}', ("device_id",)),
        (b'{"device_id": "gw-\xff", "ttl_s": 60}', ("UTF-8",)),
        (b'{"device_id": "gw-1", "ttl_s": 60, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", ("$",)),
    ],
)
async def test_token_bodies(receiver: Receiver, raw, words) -> None:
    r = await receiver.client.post("/v1/admin/tokens", content=raw, headers=ADMIN)
    assert_bad(r, *words)


async def test_an_enrolment_body_with_a_repeated_key_is_refused(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-0")
    token = await receiver.token("gw-1")
    body = json.dumps({"token": token, "device_id": "gw-1", "public_key": gw.public_key_b64})
    raw = (body[:-1] + ', "device_id": "gw-2"}').encode()
    from wire.signatures import ENROLL_TAG

    headers = gw.signed("POST", "/v1/enroll", raw, tag=ENROLL_TAG)
    r = await receiver.client.post("/v1/enroll", content=raw, headers=headers)
    assert_bad(r, "$.device_id", "duplicate")
    nested = (body[:-1] + ', "x": {"a": 1, "a": 2}}').encode()
    headers = gw.signed("POST", "/v1/enroll", nested, tag=ENROLL_TAG)
    r = await receiver.client.post("/v1/enroll", content=nested, headers=headers)
    assert_bad(r, "$.x.a", "duplicate")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v1/series/9223372036854775808/readings", ("series_id",)),
        ("/v1/series/99999999999999999999999/readings", ("series_id",)),
        ("/v1/series/0/readings", ("series_id",)),
        ("/v1/series/x/readings", ("series_id",)),
        ("/v1/series/1/readings?from_ms=1.5", ("from_ms",)),
        ("/v1/series/1/readings?from_ms=1e3", ("from_ms",)),
        ("/v1/series/1/readings?to_ms=9223372036854775808", ("to_ms",)),
        ("/v1/series/1/readings?limit=%EF%BC%91", ("limit",)),  # a full-width digit one
        ("/v1/series?device=gw%00", ("'device'", "control")),
        ("/v1/series?site=a%0Ab", ("'site'", "control")),
        ("/v1/latest?metric=%00", ("'metric'", "control")),
        ("/v1/latest?device=%FF", ("'device'", "UTF-8")),
        ("/v1/series?device=a&device=b", ("'device'", "more than once")),
        ("/v1/events?kind=%00", ("'kind'", "control")),
        ("/v1/events?device=%00&from_ms=0", ("'device'", "control")),
        ("/v1/events?to_ms=99999999999999999999", ("to_ms",)),
        ("/v1/figures/consumption?medium=%00", ("'medium'", "control")),
        ("/v1/figures/consumption?to_ms=9000000000000000000", ("to_ms",)),
        ("/v1/figures/consumption?tz=" + "a" * 300, ("tz",)),
        ("/v1/figures/materials?kind=%00", ("'kind'", "control")),
        ("/v1/figures/materials?from_ms=-1", ("from_ms",)),
    ],
)
async def test_query_parameters(receiver: Receiver, path, words) -> None:
    gw = await receiver.enrolled("gw-1")
    assert (await receiver.send(gw, gw.next_batch())).status_code == 200
    r = await receiver.client.get(path, headers=READ)
    assert_bad(r, *words)


@pytest.mark.parametrize(
    ("method", "path", "words"),
    [
        ("GET", "/v1/admin/devices/gw%00", ("device_id",)),
        ("POST", "/v1/admin/devices/gw%01/disable", ("device_id",)),
        ("POST", "/v1/admin/devices/%00/revoke", ("device_id",)),
        ("GET", "/v1/admin/devices/" + "a" * 200, ("device_id",)),
        ("POST", "/v1/admin/keys/ab%00cd/revoke", ("keyid",)),
        ("GET", "/v1/admin/devices/gw-%FF", ("device_id", "UTF-8")),
        ("POST", "/v1/admin/devices/gw-%C3/enable", ("device_id", "UTF-8")),
    ],
)
async def test_admin_path_parameters(receiver: Receiver, method, path, words) -> None:
    r = await receiver.client.request(method, path, headers=ADMIN)
    assert_bad(r, *words)


async def test_valid_parameters_still_work(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw/é 1")
    assert (await receiver.send(gw, gw.next_batch())).status_code == 200
    r = await receiver.client.get("/v1/series?device=gw%2F%C3%A9+1", headers=READ)
    assert r.status_code == 200, r.text
    (series,) = r.json()["series"]
    r = await receiver.client.get(
        f"/v1/series/{series['id']}/readings?from_ms=0&to_ms=4102444800001", headers=READ
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["points"]) == 10
    r = await receiver.client.get("/v1/series/9223372036854775807/readings", headers=READ)
    assert r.status_code == 404
    r = await receiver.client.get("/v1/admin/devices/gw/é 1", headers=ADMIN)
    assert r.status_code == 200, r.text
