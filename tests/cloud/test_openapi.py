"""The generated OpenAPI document: it covers exactly the routes the app serves, its schemas are
the wire structs', and real answers validate against them."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from starlette.routing import Route

from cloud.receiver import openapi
from tests.cloud.conftest import READ_TOKEN, Receiver
from tests.cloud.helpers import START_MS, Frozen, Gateway
from wire import admin, http, query
from wire.codec import batch_digest, encode_batch
from wire.models import Batch, ClockReport, ClockState, Counters, Event, SeriesData, SeriesKey

READ = {"authorization": f"Bearer {READ_TOKEN}"}
Schema = dict[str, Any]


def resolve(doc: Schema, schema: Schema) -> Schema:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def problems(doc: Schema, schema: Schema, value: Any, at: str = "$") -> list[str]:
    """Where `value` breaks `schema`: the subset of JSON Schema that msgspec emits."""
    schema = resolve(doc, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matching = [s for s in schema[key] if not problems(doc, s, value, at)]
            if (key == "oneOf" and len(matching) != 1) or not matching:
                return [f"{at}: matches {len(matching)} of {key}"]
            return []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)
        )
        if not ok:
            return [f"{at}: {value!r} is not {kind}"]
    found: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        found += [
            f"{at}: {name} missing" for name in schema.get("required", ()) if name not in value
        ]
        for name, item in value.items():
            if name in props:
                found += problems(doc, props[name], item, f"{at}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += problems(doc, schema["additionalProperties"], item, f"{at}.{name}")
            elif props:
                found.append(f"{at}: {name} is not in the schema")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(doc, schema["items"], item, f"{at}[{i}]")
    return found


def answer_schema(doc: Schema, method: str, path: str, status: int) -> Schema:
    response = doc["paths"][path][method]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def test_the_validator_can_fail() -> None:
    doc = openapi.document("http://x")
    ack = answer_schema(doc, "post", http.BATCHES_PATH, 200)
    assert problems(doc, ack, {"status": "stored", "seq": 1, "server_time_ms": 5}) == []
    assert problems(doc, ack, {"status": "kept", "seq": 1}) == [
        "$.status: 'kept' not in ['duplicate', 'stored']"
    ]
    assert problems(doc, ack, {"status": "stored", "seq": True}) == ["$.seq: True is not integer"]
    assert problems(doc, ack, {"seq": 1}) == ["$: status missing"]
    device = answer_schema(doc, "get", http.ADMIN_DEVICE_PATH, 200)
    assert problems(doc, device, {"device_id": 1}) != []


async def test_openapi_lists_every_route(receiver: Receiver) -> None:
    doc = (await receiver.client.get("/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": receiver.base_url}]
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in receiver.app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD" and path != "/metrics":  # text, not JSON
                served.add((method, path))
    assert served == documented


def test_schemas_are_generated_from_the_wire_structs() -> None:
    doc = openapi.document("http://x")
    structs = [
        http.BatchAck,
        http.ChainHead,
        http.ErrorBody,
        http.EnrollRequest,
        http.Enrolled,
        http.RotateRequest,
        http.Rotated,
        admin.TokenRequest,
        admin.TokenIssued,
        admin.DeviceList,
        query.Consumption,
        query.Materials,
    ]
    _, expected = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    for name, schema in expected.items():
        assert doc["components"]["schemas"][name] == schema, name
    refs = set(re.findall(r"#/components/schemas/(\w+)", json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"])  # every $ref resolves
    assert {"BatchAck", "ErrorBody", "DeviceRecord", "Consumption"} <= refs


def counter_batch(gw: Gateway) -> Frozen:
    """The next batch of `gw`: an energy counter over a minute, and a weighbridge ticket."""
    energy = SeriesData(SeriesKey("energy", "kWh", "plant-1", "hall-1", "melting", "electricity"))
    for i in range(7):
        energy.append(START_MS - 60_000 + i * 10_000, 100.0 + i)
    ticket = Event("weighbridge_ticket", START_MS - 500, (("material", "ore"), ("net_kg", 12.5)))
    batch = Batch(
        device_id=gw.device_id,
        seq=gw.head_seq + 1,
        prev=gw.head_digest,
        boot_id="boot-0001",
        series=[energy],
        events=[ticket],
        counters=Counters(),
        clock=ClockReport(ClockState.SYNCED, 12),
    )
    body = encode_batch(batch)
    frozen = Frozen(batch, body, batch_digest(body))
    gw.head_seq, gw.head_digest = frozen.seq, frozen.digest
    return frozen


@pytest.fixture
async def seen(receiver: Receiver) -> Receiver:
    """A receiver that has stored a counter and a ticket, and seen a gap."""
    gw = await receiver.enrolled("gw/1")
    assert (await receiver.send(gw, counter_batch(gw))).status_code == 200
    await receiver.send(gw, gw.build(5, bytes(32)))  # a gap
    return receiver


async def test_real_answers_validate_against_their_schemas(seen: Receiver) -> None:
    doc = (await seen.client.get("/v1/openapi.json")).json()
    series = (await seen.client.get("/v1/series", headers=READ)).json()["series"]
    sid = series[0]["id"]
    window = f"from_ms={START_MS - 3_600_000}&to_ms={START_MS + 3_600_000}"
    checks: list[tuple[str, str, str, int]] = [
        ("get", "/v1/admin/devices", http.ADMIN_DEVICES_PATH, 200),
        ("get", "/v1/admin/devices/gw/1", http.ADMIN_DEVICE_PATH, 200),
        ("get", "/v1/admin/devices/nope", http.ADMIN_DEVICE_PATH, 404),
        ("get", "/v1/devices", http.DEVICES_PATH, 200),
        ("get", "/v1/series", http.SERIES_PATH, 200),
        ("get", f"/v1/series/{sid}/readings", http.READINGS_PATH, 200),
        ("get", f"/v1/series/{sid}/readings?bucket_ms=60000", http.READINGS_PATH, 200),
        ("get", "/v1/latest", http.LATEST_PATH, 200),
        ("get", "/v1/events?from_ms=0&to_ms=2000000000000", http.EVENTS_PATH, 200),
        ("get", f"/v1/figures/consumption?{window}&detail=series", http.CONSUMPTION_PATH, 200),
        ("get", f"/v1/figures/materials?{window}&interval=day", http.MATERIALS_PATH, 200),
        ("get", "/v1/series?colour=red", http.SERIES_PATH, 400),
        ("get", "/healthz", http.HEALTH_PATH, 200),
    ]
    bodies: dict[str, Any] = {}
    for method, url, path, status in checks:
        r = await seen.admin(method.upper(), url)
        assert r.status_code == status, (url, r.text)
        assert problems(doc, answer_schema(doc, method, path, status), r.json()) == [], url
        assert r.json() not in ({}, {"points": []}), url
        bodies[path] = r.json()
    assert bodies[http.CONSUMPTION_PATH]["groups"][0]["total"] == 6.0  # not a vacuous check
    assert bodies[http.MATERIALS_PATH]["materials"][0]["total_kg"] == 12.5
    r = await seen.admin("POST", "/v1/admin/tokens", json={"device_id": "gw-2", "ttl_s": 60})
    schema = answer_schema(doc, "post", http.ADMIN_TOKENS_PATH, 201)
    assert (r.status_code, problems(doc, schema, r.json())) == (201, [])
    r = await seen.client.post("/v1/batches", content=b"x", headers={"content-type": "text/plain"})
    schema = answer_schema(doc, "post", http.BATCHES_PATH, 415)
    assert (r.status_code, problems(doc, schema, r.json())) == (415, [])


async def test_device_answers_validate_against_their_schemas(receiver: Receiver) -> None:
    doc = (await receiver.client.get("/v1/openapi.json")).json()
    gw = await receiver.enrolled("gw-1")
    r = await receiver.send(gw, gw.next_batch())
    schema = answer_schema(doc, "post", http.BATCHES_PATH, 200)
    assert (r.status_code, problems(doc, schema, r.json())) == (200, [])
    r = await receiver.send(gw, gw.build(5, bytes(32)))
    schema = answer_schema(doc, "post", http.BATCHES_PATH, 409)
    assert (r.status_code, problems(doc, schema, r.json())) == (409, [])
    headers = gw.signed("GET", http.CHAIN_HEAD_PATH, b"")
    r = await receiver.client.get(http.CHAIN_HEAD_PATH, headers=headers)
    schema = answer_schema(doc, "get", http.CHAIN_HEAD_PATH, 200)
    assert (r.status_code, problems(doc, schema, r.json())) == (200, [])
    r = await receiver.client.get(http.CHAIN_HEAD_PATH)
    schema = answer_schema(doc, "get", http.CHAIN_HEAD_PATH, 401)
    assert (r.status_code, problems(doc, schema, r.json())) == (401, [])
