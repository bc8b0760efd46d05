"""POST /v1/admin/config and GET /v1/admin/config/status: checked with the agent's own checker
(a real child process), refused with its problems, signed per device, audited."""

from __future__ import annotations

import json

import msgspec

from tests.cloud.conftest import CONFIG_KEY, Receiver
from tests.cloud.receiver.test_health import post, report
from wire.remoteconfig import (
    ADMIN_CONFIG_PATH,
    ADMIN_CONFIG_STATUS_PATH,
    CONFIG_PATH,
    SignedConfig,
    config_sha256,
    verify_config,
)

GOOD = '[clock]\nsync_check = "assume_synced"\n\n[[sources]]\ntype = "test"\nrate_hz = 2\n'


async def test_a_push_is_checked_signed_per_device_and_versioned(receiver: Receiver) -> None:
    await receiver.enrolled("gw-1")
    r = await receiver.admin("POST", ADMIN_CONFIG_PATH, json={"config": GOOD, "device": "gw-1"})
    assert r.status_code == 201, r.text
    sha = config_sha256(GOOD.encode())
    assert r.json() == {"sha256": sha, "targets": [{"device_id": "gw-1", "version": 1}]}
    again = await receiver.admin("POST", ADMIN_CONFIG_PATH, json={"config": GOOD, "device": "gw-1"})
    assert again.json()["targets"] == [{"device_id": "gw-1", "version": 2}]
    stored = await receiver.store.desired_config("gw-1")
    assert stored is not None
    signed = SignedConfig(
        device_id="gw-1",
        version=stored.version,
        sha256=stored.sha256,
        body=stored.body.decode(),
        signature=stored.signature,
    )
    # what the gateway will verify against the key it pinned at enrolment
    assert verify_config(CONFIG_KEY.public_key(), signed, device_id="gw-1", newer_than=1) == (
        GOOD.encode()
    )
    (audit, _) = await receiver.store.config_audit(10)
    assert (audit.target, audit.sha256, audit.devices) == ("device gw-1", sha, 1)
    assert audit.actor.startswith("admin token from ")


async def test_a_config_the_checker_refuses_is_refused_with_its_problems(
    receiver: Receiver,
) -> None:
    await receiver.enrolled("gw-1")
    bad = '[[sources]]\ntype = "test"\nrate_hz = -1\n\n[metrics]\nlisten = "x"\nfoo = 1\n'
    r = await receiver.admin("POST", ADMIN_CONFIG_PATH, json={"config": bad, "device": "gw-1"})
    assert r.status_code == 400, r.text
    problems = r.json()["problems"]
    assert r.json()["error"] == "bad_request"
    assert any(p.startswith("config: sources[0].rate_hz:") for p in problems), problems
    assert any(p.startswith("config: metrics.foo:") for p in problems), problems
    not_toml = await receiver.admin(
        "POST", ADMIN_CONFIG_PATH, json={"config": "[[sources]\n", "device": "gw-1"}
    )
    assert not_toml.status_code == 400
    assert "not valid TOML" in not_toml.json()["problems"][0]
    assert await receiver.store.desired_configs() == []  # nothing stored, nothing signed


async def test_secrets_and_gateway_sections_never_travel(receiver: Receiver) -> None:
    await receiver.enrolled("gw-1")
    config = GOOD + '\n[device]\nid = "gw-1"\nkey_file = "k"\n'
    config = config.replace("rate_hz = 2\n", 'rate_hz = 2\napi_token = "tle1.AAAAAAAAAAAAAAAA"\n')
    r = await receiver.admin("POST", ADMIN_CONFIG_PATH, json={"config": config, "device": "gw-1"})
    assert r.status_code == 400, r.text
    assert r.json()["problems"] == [
        "config: device: stays on the gateway; a pushed config may not hold [device]",
        "config: sources[0].api_token: looks like a secret; name a file on the gateway instead",
    ]
    assert "tle1." not in r.text


async def test_targets_are_checked(receiver: Receiver) -> None:
    for body, status in (
        ({"config": GOOD}, 400),
        ({"config": GOOD, "device": "gw-1", "tag": "site=a"}, 400),
        ({"config": GOOD, "tag": "colour=red"}, 400),
        ({"config": GOOD, "device": "nobody"}, 404),
        ({"config": GOOD, "tag": "site=nowhere"}, 404),
        ({"config": GOOD, "device": "gw-1", "extra": 1}, 400),
        ({"config": "x" * 70_000, "device": "gw-1"}, 400),
    ):
        r = await receiver.admin("POST", ADMIN_CONFIG_PATH, json=body)
        assert r.status_code == status, (body, r.text)
    r = await receiver.client.post(ADMIN_CONFIG_PATH, json={"config": GOOD, "device": "gw-1"})
    assert r.status_code == 401


async def test_a_tag_push_reaches_each_device_and_the_status_shows_each(
    receiver: Receiver,
) -> None:
    gateways = [await receiver.enrolled(f"gw-{i}") for i in range(3)]
    for gw in gateways[:2]:  # these two have series tagged site=plant-1
        assert (await receiver.send(gw, gw.next_batch())).status_code == 200
    r = await receiver.admin(
        "POST", ADMIN_CONFIG_PATH, json={"config": GOOD, "tag": "site=plant-1"}
    )
    assert r.status_code == 201, r.text
    assert [t["device_id"] for t in r.json()["targets"]] == ["gw-0", "gw-1"]
    # a report with the result of the last apply (a field this receiver stores as received)
    running = json.loads(msgspec.json.encode(report("gw-0", config_version="abc")))
    body = json.dumps({**running, "config_result": "applied"}).encode()
    assert (await post(receiver, gateways[0], body)).status_code == 200
    status = await receiver.admin("GET", ADMIN_CONFIG_STATUS_PATH)
    assert status.status_code == 200
    by_device = {d["device_id"]: d for d in status.json()["devices"]}
    assert set(by_device) == {"gw-0", "gw-1", "gw-2"}
    assert by_device["gw-0"]["desired_version"] == 1
    assert by_device["gw-0"]["desired_sha256"] == config_sha256(GOOD.encode())
    assert (by_device["gw-0"]["running"], by_device["gw-0"]["last_result"]) == ("abc", "applied")
    assert by_device["gw-1"]["running"] is None  # no report yet
    assert by_device["gw-2"]["desired_version"] is None  # not targeted


async def test_a_gateway_learns_its_version_from_the_ack_and_fetches_it_signed(
    receiver: Receiver,
) -> None:
    gw = await receiver.enrolled("gw-1")
    other = await receiver.enrolled("gw-2")

    async def fetch(g):
        headers = g.signed("GET", CONFIG_PATH, b"")
        return await receiver.client.get(CONFIG_PATH, headers=headers)

    nothing = await fetch(gw)
    assert (nothing.status_code, nothing.json()["error"]) == (404, "not_found")
    first = await post(receiver, gw, msgspec.json.encode(report("gw-1")))
    assert first.json()["desired_config_version"] is None
    for _ in range(2):
        r = await receiver.admin("POST", ADMIN_CONFIG_PATH, json={"config": GOOD, "device": "gw-1"})
        assert r.status_code == 201
    ack = await post(receiver, gw, msgspec.json.encode(report("gw-1", 1)))
    assert ack.json()["desired_config_version"] == 2
    r = await fetch(gw)
    assert r.status_code == 200, r.text
    signed = msgspec.json.decode(r.content, type=SignedConfig)
    assert signed.version == 2
    body = verify_config(CONFIG_KEY.public_key(), signed, device_id="gw-1", newer_than=1)
    assert body == GOOD.encode()
    # each gateway gets only its own: gw-2 has none
    assert (await fetch(other)).status_code == 404
    unsigned = await receiver.client.get(CONFIG_PATH)
    assert unsigned.status_code == 401
