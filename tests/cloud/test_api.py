"""Admin API, query API, health and metrics (the OpenAPI document: test_openapi.py)."""

from __future__ import annotations

import re

import pytest

from cloud.errors import StoreUnavailableError
from tests.cloud.conftest import READ_TOKEN, Receiver
from wire.models import Event

READ = {"authorization": f"Bearer {READ_TOKEN}"}


async def test_admin_endpoints_need_the_admin_token(receiver: Receiver) -> None:
    calls = [
        ("POST", "/v1/admin/tokens"),
        ("GET", "/v1/admin/devices"),
        ("GET", "/v1/admin/devices/gw-1"),
        ("POST", "/v1/admin/devices/gw-1/disable"),
        ("POST", "/v1/admin/keys/k/revoke"),
    ]
    for method, path in calls:
        for headers in (
            {},
            READ,
            {"authorization": "Basic YWRtaW4="},
            {"authorization": "Bearer x"},
        ):
            r = await receiver.client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.json() == {"error": "unauthorized", "message": "bearer token required"}


async def test_token_creation_validates_its_input(receiver: Receiver) -> None:
    for body in (
        {"device_id": "", "ttl_s": 60},
        {"device_id": "gw\n1", "ttl_s": 60},
        {"device_id": "gw-1", "ttl_s": 0},
        {"device_id": "gw-1", "ttl_s": 10**9},
        {"device_id": "gw-1", "extra": 1},
        {"ttl_s": 60},
    ):
        r = await receiver.admin("POST", "/v1/admin/tokens", json=body)
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), body
    r = await receiver.admin("POST", "/v1/admin/tokens", json={"device_id": "gw/a b", "ttl_s": 60})
    assert r.status_code == 201
    assert r.json()["expires_ms"] == receiver.clock.ms + 60_000
    assert r.json()["token"].startswith("tle1.")


async def test_device_admin_views(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw/1")  # ids may hold a slash
    await receiver.send(gw, gw.next_batch())
    await receiver.send(gw, gw.build(5, bytes(32)))  # a gap, recorded
    await receiver.token("gw-pending")
    devices = (await receiver.admin("GET", "/v1/admin/devices")).json()["devices"]
    assert [(d["device_id"], d["status"]) for d in devices] == [
        ("gw-pending", "pending"),
        ("gw/1", "active"),
    ]
    show = (await receiver.admin("GET", "/v1/admin/devices/gw/1")).json()
    assert [k["keyid"] for k in show["keys"]] == [gw.keyid]
    assert show["head_seq"] == 1
    assert show["gaps"] == 1
    assert show["chain_events"] == [
        {"kind": "gap", "seq": 5, "expected_seq": 2, "reason": "gap", "at_ms": receiver.clock.ms}
    ]
    assert (await receiver.admin("GET", "/v1/admin/devices/nope")).status_code == 404
    r = await receiver.admin("POST", "/v1/admin/devices/gw-pending/disable")
    assert (r.status_code, r.json()["error"]) == (409, "conflict")
    assert (await receiver.admin("POST", "/v1/admin/devices/nope/revoke")).status_code == 404
    assert (await receiver.admin("POST", "/v1/admin/keys/nope/revoke")).status_code == 404
    r = await receiver.admin("POST", f"/v1/admin/keys/{gw.keyid}/revoke")
    assert r.json() == {"keyid": gw.keyid, "device_id": "gw/1", "status": "revoked"}


async def test_query_api(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    events = [Event("ticket", 1_790_000_000_500, (("lot", "L1"), ("net_kg", 12.5)))]
    frozen = gw.next_batch(n_readings=20, n_series=2, events=events)
    await receiver.send(gw, frozen)
    for headers in ({}, {"authorization": "Bearer wrong"}):
        assert (await receiver.client.get("/v1/series", headers=headers)).status_code == 401
    series = (await receiver.client.get("/v1/series?area=hall-1", headers=READ)).json()["series"]
    assert [s["metric"] for s in series] == ["power_01"]
    all_series = (await receiver.admin("GET", "/v1/series?device=gw-1")).json()["series"]
    assert len(all_series) == 2
    sid = all_series[0]["id"]
    s0 = frozen.batch.series[0]
    lo, hi = s0.ts_ms[0], s0.ts_ms[-1] + 1

    raw = await receiver.client.get(
        f"/v1/series/{sid}/readings?from_ms={lo}&to_ms={hi}&limit=3", headers=READ
    )
    assert [p["value"] for p in raw.json()["points"]] == s0.values[:3]
    assert raw.json()["series"]["metric"] == "power_00"

    bucketed = await receiver.client.get(
        f"/v1/series/{sid}/readings?from_ms={lo}&to_ms={hi}&bucket_ms=10000&agg=max",
        headers=READ,
    )
    body = bucketed.json()
    assert (body["agg"], body["bucket_ms"]) == ("max", 10000)
    assert max(p["value"] for p in body["points"]) == max(s0.values)
    assert sum(p["count"] for p in body["points"]) == len(s0.values)

    for query in (
        "agg=avg",
        "bucket_ms=10&agg=median",
        "from_ms=x",
        "from_ms=5&to_ms=5",
        "bucket_ms=1&from_ms=0&to_ms=999999999",
    ):
        r = await receiver.client.get(f"/v1/series/{sid}/readings?{query}", headers=READ)
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), query
    assert (await receiver.client.get("/v1/series/999/readings", headers=READ)).status_code == 404
    assert (await receiver.client.get("/v1/series?colour=red", headers=READ)).status_code == 400

    latest = (await receiver.client.get("/v1/latest?device=gw-1", headers=READ)).json()["latest"]
    assert [(v["series"]["metric"], v["value"]) for v in latest] == [
        (s.key.metric, s.values[-1]) for s in frozen.batch.series
    ]
    ev = (
        await receiver.client.get(
            "/v1/events?device=gw-1&from_ms=0&to_ms=2000000000000", headers=READ
        )
    ).json()
    assert ev["events"][0]["attrs"] == {"lot": "L1", "net_kg": 12.5}
    devices = (await receiver.client.get("/v1/devices", headers=READ)).json()["devices"]
    assert devices[0]["head_seq"] == 1
    assert devices[0]["clock"] == {
        "state": 0,
        "offset_ms": 12,
        "created_skew_ms": devices[0]["clock"]["created_skew_ms"],
    }


async def test_health_readiness_and_errors_are_json(receiver: Receiver) -> None:
    assert (await receiver.client.get("/healthz")).json() == {"status": "ok"}
    assert (await receiver.client.get("/readyz")).json() == {"status": "ready"}
    missing = await receiver.client.get("/nope")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "message": "no such path"},  # docs/api.md: every error has one
    )
    assert missing.headers["cache-control"] == "no-store"
    wrong = await receiver.client.get("/v1/batches")
    assert (wrong.status_code, wrong.json()) == (
        405,
        {"error": "method_not_allowed", "message": "this path does not take that method"},
    )
    admin = {"authorization": "Bearer admin-token-for-tests"}
    nobody = await receiver.client.get("/v1/admin/devices/nobody", headers=admin)
    assert nobody.json() == {"error": "not_found", "message": "no such device"}


async def test_readyz_fails_when_the_store_does_not_answer(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise StoreUnavailableError("down")

    monkeypatch.setattr(receiver.store, "ping", down)
    r = await receiver.client.get("/readyz")
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (
        503,
        {"error": "unavailable"},
        "5",
    )


async def test_metrics_count_outcomes_and_rejections(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    b = gw.next_batch(n_readings=7)
    await receiver.send(gw, b)
    await receiver.send(gw, b)
    await receiver.client.post("/v1/batches", content=b"x", headers={"content-type": "text/plain"})
    text = (await receiver.client.get("/metrics")).text
    assert 'tierless_batches_total{outcome="stored"} 1' in text
    assert 'tierless_batches_total{outcome="duplicate"} 1' in text
    assert "tierless_readings_stored_total 7" in text
    assert 'tierless_rejections_total{reason="unsupported_media_type"} 1' in text
    assert 'tierless_http_requests_total{route="batches",status="200"} 2' in text
    assert "tierless_ingest_seconds_count 2" in text
    assert re.search(r'tierless_ingest_seconds_bucket\{le="\+Inf"\} 2', text)
