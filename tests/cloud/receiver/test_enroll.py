"""Enrolment, rotation and revocation over real HTTP."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.config import Limits
from cloud.receiver.configkey import public_config_key
from cloud.storage.store import Store
from tests.cloud.conftest import CONFIG_KEY, Receiver, running_receiver
from tests.cloud.helpers import Gateway
from wire.enrollment import rotate_pop_message
from wire.keys import b64url_encode, key_id, public_key_to_raw
from wire.signatures import ENROLL_TAG

REFUSED = b'{"error":"enrollment_refused"}'


async def _enroll(rc: Receiver, gw: Gateway, token: str, **sign: object):
    body = json.dumps(
        {"token": token, "device_id": gw.device_id, "public_key": gw.public_key_b64}
    ).encode()
    options = {"tag": ENROLL_TAG, **sign}
    headers = gw.signed("POST", "/v1/enroll", body, **options)  # type: ignore[arg-type]
    return await rc.client.post("/v1/enroll", content=body, headers=headers)


async def test_token_is_single_use_and_a_lost_answer_can_be_retried(receiver: Receiver) -> None:
    token = await receiver.token("gw-1")
    gw = Gateway("gw-1", base_url=receiver.base_url)
    first = await _enroll(receiver, gw, token)
    assert first.status_code == 201
    body = first.json()
    assert body == {
        "device_id": "gw-1",
        "keyid": gw.keyid,
        "head_seq": 0,
        "head_digest": b64url_encode(bytes(32)),
        "server_time_ms": receiver.clock.ms,
        "config_key": public_config_key(CONFIG_KEY),  # the gateway pins it
    }
    again = await _enroll(receiver, gw, token)  # the gateway lost the answer
    assert (again.status_code, again.json()) == (201, body)
    thief = Gateway("gw-1", base_url=receiver.base_url)
    stolen = await _enroll(receiver, thief, token)
    assert (stolen.status_code, stolen.content) == (401, REFUSED)


async def test_every_refusal_looks_the_same(receiver: Receiver) -> None:
    token = await receiver.token("gw-1", ttl_s=60)
    gw = Gateway("gw-1", base_url=receiver.base_url)
    other_key = Ed25519PrivateKey.generate()
    cases = {
        "unknown token": await _enroll(receiver, gw, token[:-8] + "AAAAAAAA"),
        "garbage token": await _enroll(receiver, gw, "not-a-token"),
        "wrong device": await _enroll(receiver, Gateway("gw-2"), token),
        "no proof of possession": await _enroll(receiver, gw, token, key=other_key),
        "wrong tag": await _enroll(receiver, gw, token, tag="tierless-batch-v1"),
        "wrong target": await _enroll(receiver, gw, token, base_url="https://elsewhere"),
    }
    for name, r in cases.items():
        assert (r.status_code, r.content) == (401, REFUSED), name
    receiver.clock.advance(61_000)
    expired = await _enroll(receiver, gw, token)
    assert (expired.status_code, expired.content) == (401, REFUSED)
    assert (await receiver.store.list_devices())[0].status == "pending"


async def test_token_locks_after_five_failures(receiver: Receiver) -> None:
    token = await receiver.token("gw-1")
    gw = Gateway("gw-1", base_url=receiver.base_url)
    wrong = token[:-8] + ("AAAAAAAA" if not token.endswith("AAAAAAAA") else "BBBBBBBB")
    for _ in range(5):
        assert (await _enroll(receiver, gw, wrong)).status_code == 401
    assert (await _enroll(receiver, gw, token)).status_code == 401


async def test_malformed_enrolment_is_400(receiver: Receiver) -> None:
    gw = Gateway("gw-1", base_url=receiver.base_url)
    for body in (
        b"not json",
        b'{"token": 1}',
        json.dumps({"token": "t", "device_id": "gw-1", "public_key": "!!"}).encode(),
    ):
        headers = gw.signed("POST", "/v1/enroll", body, tag=ENROLL_TAG)
        r = await receiver.client.post("/v1/enroll", content=body, headers=headers)
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")


async def test_enrolment_rate_limit_per_address(store: Store) -> None:
    async with running_receiver(store, Limits(enroll_burst=2, device_burst=100)) as rc:
        gw = Gateway("gw-1", base_url=rc.base_url)
        statuses = [(await _enroll(rc, gw, "tle1.x")).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]


def _rotate_request(gw: Gateway, new: Gateway, *, pop_key=None) -> tuple[dict[str, str], bytes]:
    message = rotate_pop_message(gw.device_id, gw.keyid, new.keyid)
    pop = (pop_key or new.key).sign(message)
    body = json.dumps({"new_public_key": new.public_key_b64, "pop": b64url_encode(pop)}).encode()
    return gw.signed("POST", "/v1/keys/rotate", body), body


async def test_rotation_overlap_then_the_old_key_is_refused(receiver: Receiver) -> None:
    old = await receiver.enrolled("gw-1")
    new = Gateway("gw-1", key=Ed25519PrivateKey.generate(), base_url=receiver.base_url)
    headers, body = _rotate_request(old, new)
    r = await receiver.client.post("/v1/keys/rotate", content=body, headers=headers)
    assert r.status_code == 200, r.text
    overlap = 7 * 24 * 3600 * 1000
    assert r.json() == {
        "keyid": new.keyid,
        "old_keyid": old.keyid,
        "old_not_after_ms": receiver.clock.ms + overlap,
    }
    again = await receiver.client.post("/v1/keys/rotate", content=body, headers=headers)
    assert (again.status_code, again.json()) == (200, r.json())

    # the chain belongs to the device: both keys extend it during the overlap
    new.head_seq, new.head_digest = old.head_seq, old.head_digest
    b1 = old.next_batch()
    assert (await receiver.send(old, b1)).status_code == 200
    new.head_seq, new.head_digest = old.head_seq, old.head_digest
    assert (await receiver.send(new, new.next_batch())).status_code == 200

    receiver.clock.advance(overlap)
    b3 = new.next_batch()
    late = await receiver.send(old, b3)
    assert (late.status_code, late.json()["error"]) == (403, "forbidden")
    assert (await receiver.send(new, b3)).status_code == 200


async def test_rotation_needs_proof_of_the_new_key(receiver: Receiver) -> None:
    old = await receiver.enrolled("gw-1")
    new = Gateway("gw-1")
    headers, body = _rotate_request(old, new, pop_key=Ed25519PrivateKey.generate())
    r = await receiver.client.post("/v1/keys/rotate", content=body, headers=headers)
    assert r.status_code == 400
    assert await receiver.store.get_key(new.keyid) is None


async def test_revocation_then_reenrolment_continues_the_chain(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    assert (await receiver.send(gw, gw.next_batch())).status_code == 200
    r = await receiver.admin("POST", "/v1/admin/devices/gw-1/revoke")
    assert r.json() == {"device_id": "gw-1", "revoked": 1}
    pending = gw.next_batch()
    refused = await receiver.send(gw, pending)
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")

    fresh = await receiver.enrolled("gw-1")  # the operator issued a new token
    fresh.head_seq, fresh.head_digest = gw.head_seq, gw.head_digest
    ok = await receiver.send(fresh, pending)  # the buffered batch still fits the chain
    assert (ok.status_code, ok.json()["seq"]) == (200, 2)


async def test_disable_and_enable_a_device(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    assert (await receiver.admin("POST", "/v1/admin/devices/gw-1/disable")).status_code == 200
    b = gw.next_batch()
    assert (await receiver.send(gw, b)).status_code == 403
    assert (await receiver.admin("POST", "/v1/admin/devices/gw-1/enable")).status_code == 200
    assert (await receiver.send(gw, b)).status_code == 200


def test_keyid_of_the_helper_is_the_wire_thumbprint() -> None:
    gw = Gateway("gw-1")
    assert gw.keyid == key_id(gw.key.public_key())
    assert len(public_key_to_raw(gw.key.public_key())) == 32


async def test_revocation_by_another_receiver_applies_within_the_key_cache_time(
    receiver: Receiver,
) -> None:
    gw = await receiver.enrolled("gw-1")
    assert (await receiver.send(gw, gw.next_batch())).status_code == 200
    await receiver.store.revoke_key(gw.keyid, receiver.clock.ms)  # as another receiver would
    receiver.clock.advance(1000)  # Limits.key_cache_s
    r = await receiver.send(gw, gw.next_batch())
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
