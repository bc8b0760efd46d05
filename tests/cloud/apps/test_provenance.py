"""GET /v1/devices/{id}/batches: which agent config produced a device's readings."""

from __future__ import annotations

from tests.cloud.conftest import READ_TOKEN, Receiver
from tests.cloud.helpers import START_MS
from wire.http import device_batches_path

READ = {"authorization": f"Bearer {READ_TOKEN}"}
HOUR_MS = 3_600_000


async def test_a_reading_is_traced_to_the_config_that_read_it(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw/1")  # ids may hold a slash
    for version in ("aaaa", "", "bbbb"):  # "": an older agent that does not say
        r = await receiver.send(gw, gw.next_batch(config_version=version))
        assert r.status_code == 200
    path = device_batches_path("gw/1")
    q = {"from_ms": START_MS, "to_ms": START_MS + HOUR_MS}
    r = await receiver.client.get(path, params=q, headers=READ)
    assert r.status_code == 200
    listed = r.json()["batches"]
    assert [(b["seq"], b["config_version"]) for b in listed] == [(1, "aaaa"), (2, ""), (3, "bbbb")]
    assert listed[0] == {
        "device_id": "gw/1",
        "seq": 1,
        "received_ms": listed[0]["received_ms"],
        "boot_id": "boot-0001",
        "config_version": "aaaa",
        "readings": 10,
        "events": 0,
        "min_ts_ms": START_MS + 10_000,
        "max_ts_ms": START_MS + 19_000,
    }
    # the reading at START + 35 s came in batch 3, read under bbbb
    at = START_MS + 35_000
    r = await receiver.client.get(path, params={"from_ms": at, "to_ms": at + 1}, headers=READ)
    assert [(b["seq"], b["config_version"]) for b in r.json()["batches"]] == [(3, "bbbb")]


async def test_bad_requests_are_400_naming_the_parameter(receiver: Receiver) -> None:
    path = device_batches_path("gw-1")
    assert (await receiver.client.get(path)).status_code == 401
    for params, word in (
        ({"from_ms": 5, "to_ms": 5}, "from_ms"),
        ({"limit": 0}, "limit"),
        ({"to_ms": "soon"}, "to_ms"),
        ({"seq": 1}, "'seq'"),
    ):
        r = await receiver.client.get(path, params=params, headers=READ)
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), params
        assert word in r.json()["message"], params
    unknown = await receiver.client.get(device_batches_path("nobody"), headers=READ)
    assert (unknown.status_code, unknown.json()) == (200, {"batches": []})
