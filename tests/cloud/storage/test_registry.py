"""The registry interface on both backends (PostgreSQL both ways, see conftest.py): keys,
enrolment tokens, re-enrolment, rotation, revocation and device status, and the device state
the batch path keeps."""

from __future__ import annotations

import dataclasses

from cloud.receiver.tokens import issue_token
from cloud.storage.devices import DeviceStatus, KeyStatus
from cloud.storage.registry import EnrollRequest
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, Gateway, register
from wire.enrollment import parse_token
from wire.keys import public_key_to_raw
from wire.models import GENESIS, Counters


async def test_register_makes_an_active_usable_key(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    key = await store.get_key(gw.keyid)
    assert key is not None
    assert (key.device_id, key.status, key.device_status) == (
        "gw-1",
        KeyStatus.ACTIVE,
        DeviceStatus.ACTIVE,
    )
    assert key.public_key == public_key_to_raw(gw.key.public_key())
    assert key.usable(START_MS)
    assert await store.get_key("nope") is None
    head = await store.chain_head("gw-1")
    assert head is not None
    assert (head.seq, head.digest) == (0, GENESIS)


async def test_device_state_sums_counters_and_records_clock(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    for n in (1, 2):
        b = gw.next_batch(counters=Counters(n, 10 * n, 100 * n))
        meta = dataclasses.replace(gw.meta(b), received_ms=START_MS + n, sig_created=1_790_000_003)
        await store.store_batch(meta, b.batch)
    [device] = await store.list_devices()
    assert (device.dropped_buffer_full, device.dropped_damaged, device.rejected_invalid) == (
        3,
        30,
        300,
    )
    assert (device.batches, device.readings, device.last_seen_ms) == (2, 20, START_MS + 2)
    assert (device.clock_state, device.clock_offset_ms, device.created_skew_ms) == (0, 12, 2998)
    assert device.last_boot_id == "boot-0001"


async def _enroll(store: Store, gw: Gateway, token: str, *, now_ms: int = START_MS, device=None):
    parsed = parse_token(token)
    return await store.enroll(
        EnrollRequest(
            parsed.token_id,
            parsed.token_hash,
            device or gw.device_id,
            gw.keyid,
            public_key_to_raw(gw.key.public_key()),
            now_ms,
        ),
        max_failures=5,
    )


async def test_enrolment_token_rules(store: Store) -> None:
    gw, thief = Gateway("gw-1"), Gateway("gw-1")
    token, record = issue_token("gw-1", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record)
    pending = await store.get_device("gw-1")
    assert pending is not None
    assert pending.status is DeviceStatus.PENDING
    assert await _enroll(store, gw, token, now_ms=START_MS + 60_000) is None  # expired
    head = await _enroll(store, gw, token)
    assert head is not None
    assert head.seq == 0
    assert await _enroll(store, gw, token) == head  # the same key again: idempotent
    assert await _enroll(store, thief, token) is None  # used
    assert await store.get_key(thief.keyid) is None

    token2, record2 = issue_token("gw-2", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record2)
    other = Gateway("gw-2")
    tampered = token2[:-2] + ("AA" if not token2.endswith("AA") else "BA")
    for _ in range(5):
        assert await _enroll(store, other, tampered) is None  # wrong secret: counted
    assert await _enroll(store, other, token2) is None  # locked now, even with the right one
    token3, record3 = issue_token("gw-3", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record3)
    assert await _enroll(store, Gateway("gw-3"), token3, device="gw-1") is None  # wrong device


async def test_reenrolment_keeps_the_chain(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    b = gw.next_batch()
    await store.store_batch(gw.meta(b), b.batch)
    assert await store.revoke_device_keys("gw-1", START_MS) == 1
    new = Gateway("gw-1")
    token, record = issue_token("gw-1", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record)
    head = await _enroll(store, new, token)
    assert head is not None
    assert (head.seq, head.digest) == (1, b.digest)
    old_key = await store.get_key(gw.keyid)
    assert old_key is not None
    assert old_key.status is KeyStatus.REVOKED
    assert not old_key.usable(START_MS)


async def test_a_device_with_every_key_revoked_reads_as_revoked_until_it_re_enrols(
    store: Store,
) -> None:
    async def status(device_id: str) -> tuple[str | None, str | None]:
        listed = {d.device_id: d.status for d in await store.list_devices()}
        one = await store.get_device(device_id)
        return listed.get(device_id), None if one is None else one.status

    gw = Gateway("gw-1")
    await register(store, gw)
    await register(store, Gateway("gw-2"))
    await store.create_token(issue_token("gw-3", now_ms=START_MS, ttl_ms=60_000)[1])
    assert await status("gw-1") == (DeviceStatus.ACTIVE, DeviceStatus.ACTIVE)
    # no key yet: pending, not revoked
    assert await status("gw-3") == (DeviceStatus.PENDING, DeviceStatus.PENDING)
    assert await store.revoke_device_keys("gw-1", START_MS) == 1
    assert await status("gw-1") == (DeviceStatus.REVOKED, DeviceStatus.REVOKED)
    assert await status("gw-2") == (DeviceStatus.ACTIVE, DeviceStatus.ACTIVE)  # only that one
    await store.set_device_status("gw-1", DeviceStatus.DISABLED)
    assert await status("gw-1") == (DeviceStatus.DISABLED, DeviceStatus.DISABLED)  # as stored
    await store.set_device_status("gw-1", DeviceStatus.ACTIVE)
    token, record = issue_token("gw-1", now_ms=START_MS, ttl_ms=60_000)
    await store.create_token(record)
    assert await _enroll(store, Gateway("gw-1"), token) is not None
    assert await status("gw-1") == (DeviceStatus.ACTIVE, DeviceStatus.ACTIVE)


async def test_rotation_overlap_and_idempotence(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    nxt = Gateway("gw-1")
    raw = public_key_to_raw(nxt.key.public_key())
    rot = await store.rotate_key("gw-1", gw.keyid, nxt.keyid, raw, now_ms=START_MS, overlap_ms=1000)
    assert rot is not None
    assert (rot.keyid, rot.old_keyid, rot.old_not_after_ms) == (
        nxt.keyid,
        gw.keyid,
        START_MS + 1000,
    )
    again = await store.rotate_key(
        "gw-1", gw.keyid, nxt.keyid, raw, now_ms=START_MS + 500, overlap_ms=1000
    )
    assert again == rot
    old = await store.get_key(gw.keyid)
    assert old is not None
    assert old.status is KeyStatus.RETIRING
    assert old.usable(START_MS + 999)
    assert not old.usable(START_MS + 1000)
    third = Gateway("gw-1")
    assert (
        await store.rotate_key(
            "gw-1",
            gw.keyid,
            third.keyid,
            public_key_to_raw(third.key.public_key()),
            now_ms=START_MS,
            overlap_ms=1000,
        )
        is None
    )  # a retiring key cannot start another rotation
    assert (
        await store.rotate_key("gw-2", nxt.keyid, third.keyid, raw, now_ms=0, overlap_ms=0) is None
    )


async def test_revocation_and_device_status(store: Store) -> None:
    gw = Gateway("gw-1")
    await register(store, gw)
    assert await store.set_device_status("gw-1", DeviceStatus.DISABLED)
    key = await store.get_key(gw.keyid)
    assert key is not None
    assert not key.usable(START_MS)
    assert await store.set_device_status("gw-1", DeviceStatus.ACTIVE)
    assert await store.revoke_key(gw.keyid, START_MS)
    assert not await store.revoke_key(gw.keyid, START_MS)  # already revoked
    key = await store.get_key(gw.keyid)
    assert key is not None
    assert (key.status, key.revoked_ms) == (KeyStatus.REVOKED, START_MS)
    assert not await store.set_device_status("nope", DeviceStatus.DISABLED)
    _, record = issue_token("gw-9", now_ms=START_MS, ttl_ms=1)
    await store.create_token(record)
    assert not await store.set_device_status("gw-9", DeviceStatus.ACTIVE)  # pending stays
