"""POST /v1/health over real HTTP on both stores: verified like a batch, stored (latest plus a
bounded history), served with the read token and in the device lists."""

from __future__ import annotations

import msgspec

from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, Receiver
from tests.cloud.helpers import Gateway
from wire.http import Backlog, HealthReport, SourceHealth

PATH = "/v1/health"


def report(device_id: str, n: int = 0, **kw: object) -> HealthReport:
    fields: dict[str, object] = {
        "device_id": device_id,
        "reported_ms": 1_790_000_000_000 + n,
        "agent_version": "0.1.0",
        "config_version": "0123456789abcdef",
        "started_ms": 1_790_000_000_000,
        "uptime_s": float(n),
        "restarts": 2,
        "backlog": Backlog(readings=n, bytes=4096, oldest_age_s=1.5),
        "drops": {"buffer_full": 0, "damaged": 0, "rejected_invalid": 3},
        "clock_state": 0,
        "sources": [
            SourceHealth(
                name="scale",
                state="down",
                down_since_ms=1_789_999_990_000,
                reason="port_lost",
                detail="/dev/ttyUSB0: gone",
                outages=1,
            )
        ],
    }
    return HealthReport(**(fields | kw))  # type: ignore[arg-type]


async def post(receiver: Receiver, gw: Gateway, body: bytes, **kw: object):
    headers = gw.signed("POST", PATH, body, **kw)  # type: ignore[arg-type]
    return await receiver.client.post(PATH, content=body, headers=headers)


async def get(receiver: Receiver, path: str, token: str = READ_TOKEN):
    return await receiver.client.get(path, headers={"authorization": f"Bearer {token}"})


async def test_a_report_is_stored_and_served_latest_first(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    assert (await get(receiver, "/v1/devices/gw-1/health")).status_code == 404
    for n in range(3):
        r = await post(receiver, gw, msgspec.json.encode(report("gw-1", n)))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "status": "stored",
            "server_time_ms": receiver.clock.ms,
            "desired_config_version": None,  # no config was pushed to it
        }
    r = await get(receiver, "/v1/devices/gw-1/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["report"]["uptime_s"] == 2.0
    assert [h["uptime_s"] for h in body["history"]] == [2.0, 1.0, 0.0]
    (scale,) = body["report"]["sources"]
    assert (scale["state"], scale["reason"]) == ("down", "port_lost")
    # in both device lists, without the history
    for path, token in (("/v1/devices", READ_TOKEN), ("/v1/admin/devices", ADMIN_TOKEN)):
        (device,) = (await get(receiver, path, token)).json()["devices"]
        assert device["health"]["report"]["restarts"] == 2
        assert "history" not in device["health"]
    shown = (await get(receiver, "/v1/admin/devices/gw-1", ADMIN_TOKEN)).json()
    assert shown["health"]["report"]["config_version"] == "0123456789abcdef"
    # the read token is needed
    assert (await get(receiver, "/v1/devices/gw-1/health", "wrong")).status_code == 401


async def test_unknown_fields_from_a_newer_gateway_are_kept(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    raw = msgspec.json.decode(msgspec.json.encode(report("gw-1")))
    raw["from_the_future"] = {"x": 1}
    assert (await post(receiver, gw, msgspec.json.encode(raw))).status_code == 200
    (record,) = await receiver.store.latest_health("gw-1")
    assert b"from_the_future" in record.body


async def test_refusals_store_nothing(receiver: Receiver) -> None:
    gw, other = await receiver.enrolled("gw-1"), await receiver.enrolled("gw-2")
    good = msgspec.json.encode(report("gw-1"))
    # another device's report, signed with its own key
    r = await post(receiver, other, good)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    # a key the receiver does not know
    stranger = Gateway("gw-1", base_url=gw.base_url)
    assert (await post(receiver, stranger, good)).status_code == 401
    # a body changed after signing
    headers = gw.signed("POST", PATH, good)
    tampered = good.replace(b'"restarts":2', b'"restarts":0')
    r = await receiver.client.post(PATH, content=tampered, headers=headers)
    assert r.status_code == 401
    # not a report, not JSON
    assert (await post(receiver, gw, b'{"device_id":"gw-1"}')).status_code == 400
    assert (await post(receiver, gw, good, content_type="text/plain")).status_code == 415
    # too large for a report
    huge = msgspec.json.encode(report("gw-1", errors={f"e{i}": i for i in range(10_000)}))
    assert (await post(receiver, gw, huge)).status_code == 413
    # a revoked key
    await receiver.admin("POST", "/v1/admin/devices/gw-1/revoke")
    assert (await post(receiver, gw, good)).status_code == 403
    assert await receiver.store.latest_health() == []


async def test_the_history_is_bounded(receiver: Receiver) -> None:
    await receiver.enrolled("gw-1")
    for n in range(12):
        await receiver.store.store_health("gw-1", n, b'{"n":%d}' % n, keep=5)
    history = await receiver.store.health_history("gw-1", 100)
    assert [r.received_ms for r in history] == [11, 10, 9, 8, 7]
    (latest,) = await receiver.store.latest_health("gw-1")
    assert latest.received_ms == 11
