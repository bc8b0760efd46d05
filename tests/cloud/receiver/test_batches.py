"""POST /v1/batches over real HTTP: the happy path, the chain answers, and every attack class.

Each attack must get its documented status, write nothing, and leave the receiver accepting the
gateway's next valid batch.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
import zstandard

from cloud.config import Limits
from cloud.responses import UNAUTHORIZED_BYTES
from cloud.storage.store import Store
from tests.cloud.conftest import Receiver, running_receiver
from tests.cloud.helpers import Gateway, row_counts
from wire.codec import MEDIA_TYPE
from wire.compression import compress
from wire.digest import content_digest
from wire.keys import b64url_decode
from wire.models import Counters, Event
from wire.signatures import ENROLL_TAG

MiB = 1024 * 1024


async def test_batches_are_stored_in_order_with_every_coding(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    for encoding in ("gzip", "zstd", None):
        frozen = gw.next_batch(n_readings=40, n_series=4, events=[Event("t", 1_790_000_000_000)])
        r = await receiver.send(gw, frozen, encoding=encoding)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "status": "stored",
            "seq": frozen.seq,
            "server_time_ms": receiver.clock.ms,
        }
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["accept-encoding"] == "zstd, gzip"
        assert "server" not in r.headers
    counts = await row_counts(receiver.store)
    assert (counts["batch"], counts["reading"], counts["event"]) == (3, 120, 3)
    assert receiver.metrics.readings.value() == 120


async def test_retry_is_a_duplicate_and_gap_and_fork_are_409(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    b1 = gw.next_batch()
    assert (await receiver.send(gw, b1)).json()["status"] == "stored"
    again = await receiver.send(gw, b1, encoding="zstd")  # re-signed, other coding: same batch
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")

    b2, b3 = gw.next_batch(), gw.next_batch()
    gap = await receiver.send(gw, b3)
    assert (gap.status_code, gap.json()) == (409, {"error": "seq_gap", "expected_seq": 2})
    fork = gw.build(1, bytes(32), n_readings=5)
    conflict = await receiver.send(gw, fork)
    assert conflict.status_code == 409
    assert conflict.json() == {
        "error": "chain_conflict",
        "expected_seq": 2,
        "reason": "digest_mismatch",
    }
    assert (await receiver.send(gw, b2)).status_code == 200
    assert (await receiver.send(gw, b3)).status_code == 200
    assert receiver.metrics.batches.value("duplicate") == 1


async def test_chain_head_is_signed_and_reports_the_head(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    b1 = gw.next_batch()
    await receiver.send(gw, b1)
    r = await receiver.client.get("/v1/chain/head", headers=gw.signed("GET", "/v1/chain/head", b""))
    assert r.status_code == 200
    body = r.json()
    assert (body["device_id"], body["seq"]) == ("gw-1", 1)
    assert b64url_decode(body["digest"]) == b1.digest
    stranger = Gateway("gw-1", base_url=receiver.base_url)
    r = await receiver.client.get(
        "/v1/chain/head", headers=stranger.signed("GET", "/v1/chain/head", b"")
    )
    assert (r.status_code, r.content) == (401, UNAUTHORIZED_BYTES)


# -- attacks ----------------------------------------------------------------------------------

Attack = Callable[[Receiver, Gateway], Awaitable[httpx.Response]]


async def _post(rc: Receiver, headers: dict[str, str], body: bytes) -> httpx.Response:
    return await rc.client.post("/v1/batches", content=body, headers=headers)


async def tampered_body(rc: Receiver, gw: Gateway) -> httpx.Response:
    headers, body = gw.batch_request(gw.build(gw.head_seq + 1, gw.head_digest))
    evil = gw.build(gw.head_seq + 1, gw.head_digest, n_readings=11)
    return await _post(rc, headers, compress(evil.body, "gzip"))


async def digest_recomputed(rc: Receiver, gw: Gateway) -> httpx.Response:
    headers, _ = gw.batch_request(gw.build(gw.head_seq + 1, gw.head_digest))
    evil = compress(gw.build(gw.head_seq + 1, gw.head_digest, n_readings=11).body, "gzip")
    headers["content-digest"] = content_digest(evil)
    return await _post(rc, headers, evil)


async def unknown_key(rc: Receiver, gw: Gateway) -> httpx.Response:
    stranger = Gateway(gw.device_id, base_url=gw.base_url)
    return await _post(rc, *stranger.batch_request(gw.build(gw.head_seq + 1, gw.head_digest)))


async def wrong_tag(rc: Receiver, gw: Gateway) -> httpx.Response:
    frozen = gw.build(gw.head_seq + 1, gw.head_digest)
    return await _post(rc, *gw.batch_request(frozen, tag=ENROLL_TAG))


async def wrong_target_host(rc: Receiver, gw: Gateway) -> httpx.Response:
    frozen = gw.build(gw.head_seq + 1, gw.head_digest)
    return await _post(rc, *gw.batch_request(frozen, base_url="https://other.example.com"))


async def wrong_target_path(rc: Receiver, gw: Gateway) -> httpx.Response:
    frozen = gw.build(gw.head_seq + 1, gw.head_digest)
    body = compress(frozen.body, "gzip")
    headers = gw.signed("POST", "/v1/keys/rotate", body, content_type=MEDIA_TYPE, encoding="gzip")
    return await _post(rc, headers, body)


async def no_signature(rc: Receiver, gw: Gateway) -> httpx.Response:
    headers, body = gw.batch_request(gw.build(gw.head_seq + 1, gw.head_digest))
    del headers["signature"]
    return await _post(rc, headers, body)


async def two_signatures(rc: Receiver, gw: Gateway) -> httpx.Response:
    headers, body = gw.batch_request(gw.build(gw.head_seq + 1, gw.head_digest))
    h = list(headers.items()) + [("signature-input", headers["signature-input"])]
    return await rc.client.post("/v1/batches", content=body, headers=h)


async def encoding_not_covered(rc: Receiver, gw: Gateway) -> httpx.Response:
    frozen = gw.build(gw.head_seq + 1, gw.head_digest)
    headers, body = gw.batch_request(frozen, encoding=None)
    headers["content-encoding"] = "gzip"  # relabelled after signing
    return await _post(rc, headers, compress(frozen.body, "gzip"))


async def garbage_signature(rc: Receiver, gw: Gateway) -> httpx.Response:
    headers, body = gw.batch_request(gw.build(gw.head_seq + 1, gw.head_digest))
    headers["signature"] = "sig1=:" + "A" * 86 + "==:"
    return await _post(rc, headers, body)


async def impersonation(rc: Receiver, gw: Gateway) -> httpx.Response:
    victim = Gateway("gw-victim")
    frozen = gw.build(1, victim.head_digest, device_id="gw-victim")
    return await _post(rc, *gw.batch_request(frozen))


async def revoked_key(rc: Receiver, gw: Gateway) -> httpx.Response:
    other = await rc.enrolled(gw.device_id)  # the device's second key
    r = await rc.admin("POST", f"/v1/admin/keys/{other.keyid}/revoke")
    assert r.status_code == 200
    return await _post(rc, *other.batch_request(gw.build(gw.head_seq + 1, gw.head_digest)))


async def replay(rc: Receiver, gw: Gateway) -> httpx.Response:
    # the captured request of the last stored batch, sent again byte for byte
    return await _post(rc, *rc.last_request)  # type: ignore[attr-defined]


@functools.cache
def _gzip_bomb() -> bytes:
    return gzip.compress(bytes(64 * MiB), 9)


@functools.cache
def _zstd_bomb() -> bytes:
    # 64 MiB of zeros; the frame header declares its size, which the receiver must not trust
    return bytes(zstandard.ZstdCompressor(level=19).compress(bytes(64 * MiB)))


async def gzip_bomb(rc: Receiver, gw: Gateway) -> httpx.Response:
    bomb = _gzip_bomb()
    assert len(bomb) < 2 * MiB
    headers = gw.signed("POST", "/v1/batches", bomb, content_type=MEDIA_TYPE, encoding="gzip")
    return await _post(rc, headers, bomb)


async def zstd_bomb(rc: Receiver, gw: Gateway) -> httpx.Response:
    bomb = _zstd_bomb()
    assert len(bomb) < 2 * MiB
    headers = gw.signed("POST", "/v1/batches", bomb, content_type=MEDIA_TYPE, encoding="zstd")
    return await _post(rc, headers, bomb)


def _signed_raw(gw: Gateway, body: bytes, encoding: str | None = "gzip") -> dict[str, str]:
    return gw.signed("POST", "/v1/batches", body, content_type=MEDIA_TYPE, encoding=encoding)


async def corrupt_gzip(rc: Receiver, gw: Gateway) -> httpx.Response:
    body = compress(gw.build(gw.head_seq + 1, gw.head_digest).body, "gzip")
    body = body[:20] + bytes(len(body) - 20)
    return await _post(rc, _signed_raw(gw, body), body)


async def gzip_two_members(rc: Receiver, gw: Gateway) -> httpx.Response:
    frozen = gw.build(gw.head_seq + 1, gw.head_digest)
    body = compress(frozen.body, "gzip") + compress(b"more", "gzip")
    return await _post(rc, _signed_raw(gw, body), body)


async def unknown_coding(rc: Receiver, gw: Gateway) -> httpx.Response:
    body = gw.build(gw.head_seq + 1, gw.head_digest).body
    return await _post(rc, _signed_raw(gw, body, "br"), body)


async def stacked_codings(rc: Receiver, gw: Gateway) -> httpx.Response:
    body = compress(compress(gw.build(gw.head_seq + 1, gw.head_digest).body, "gzip"), "gzip")
    return await _post(rc, _signed_raw(gw, body, "gzip, gzip"), body)


async def wrong_content_type(rc: Receiver, gw: Gateway) -> httpx.Response:
    body = compress(gw.build(gw.head_seq + 1, gw.head_digest).body, "gzip")
    headers = gw.signed(
        "POST", "/v1/batches", body, content_type="application/json", encoding="gzip"
    )
    return await _post(rc, headers, body)


async def not_msgpack(rc: Receiver, gw: Gateway) -> httpx.Response:
    body = compress(b'{"v": 1, "device_id": "gw-1"}', "gzip")
    return await _post(rc, _signed_raw(gw, body), body)


async def wrong_version(rc: Receiver, gw: Gateway) -> httpx.Response:
    fields = msgspec.msgpack.decode(gw.build(gw.head_seq + 1, gw.head_digest).body)
    fields[0] = 2
    body = compress(msgspec.msgpack.encode(fields), "gzip")
    return await _post(rc, _signed_raw(gw, body), body)


async def nan_value(rc: Receiver, gw: Gateway) -> httpx.Response:
    fields = msgspec.msgpack.decode(gw.build(gw.head_seq + 1, gw.head_digest).body)
    series = fields[7][0]
    series[8], series[9], series[10] = -1, [], [float("nan")] * (len(series[7]) + 1)
    body = compress(msgspec.msgpack.encode(fields), "gzip")
    return await _post(rc, _signed_raw(gw, body), body)


async def truncated_envelope(rc: Receiver, gw: Gateway) -> httpx.Response:
    raw = gw.build(gw.head_seq + 1, gw.head_digest).body
    body = compress(raw[: len(raw) // 2], "gzip")
    return await _post(rc, _signed_raw(gw, body), body)


ATTACKS: dict[str, tuple[Attack, int]] = {
    "tampered_body": (tampered_body, 401),
    "digest_recomputed": (digest_recomputed, 401),
    "unknown_key": (unknown_key, 401),
    "wrong_tag": (wrong_tag, 401),
    "wrong_target_host": (wrong_target_host, 401),
    "wrong_target_path": (wrong_target_path, 401),
    "no_signature": (no_signature, 401),
    "two_signatures": (two_signatures, 401),
    "encoding_not_covered": (encoding_not_covered, 401),
    "garbage_signature": (garbage_signature, 401),
    "impersonation": (impersonation, 403),
    "revoked_key": (revoked_key, 403),
    "replay": (replay, 200),
    "gzip_bomb": (gzip_bomb, 413),
    "zstd_bomb": (zstd_bomb, 413),
    "corrupt_gzip": (corrupt_gzip, 400),
    "gzip_two_members": (gzip_two_members, 400),
    "unknown_coding": (unknown_coding, 415),
    "stacked_codings": (stacked_codings, 415),
    "wrong_content_type": (wrong_content_type, 415),
    "not_msgpack": (not_msgpack, 400),
    "wrong_version": (wrong_version, 415),
    "nan_value": (nan_value, 400),
    "truncated_envelope": (truncated_envelope, 400),
}


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_attack_is_refused_writes_nothing_and_valid_batches_still_flow(
    receiver: Receiver, name: str
) -> None:
    attack, status = ATTACKS[name]
    gw = await receiver.enrolled("gw-1")
    await receiver.token("gw-victim")  # the impersonated device exists
    first = gw.next_batch()
    receiver.last_request = gw.batch_request(first)  # type: ignore[attr-defined]
    assert (await _post(receiver, *receiver.last_request)).status_code == 200  # type: ignore[attr-defined]
    before = await row_counts(receiver.store)

    r = await attack(receiver, gw)

    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"
    after = await row_counts(receiver.store)
    before_keys, after_keys = before.pop("device_key"), after.pop("device_key")
    assert after == before
    assert after_keys - before_keys == (1 if name == "revoked_key" else 0)
    if status == 401:
        assert r.content == UNAUTHORIZED_BYTES
        assert r.headers["www-authenticate"] == 'Signature realm="tierless"'
    elif status == 200:
        assert r.json()["status"] == "duplicate"
    else:
        assert set(r.json()) <= {"error", "message"}
        assert "Traceback" not in r.text

    nxt = gw.next_batch()
    ok = await receiver.send(gw, nxt)
    assert (ok.status_code, ok.json()["status"]) == (200, "stored")


async def _raw_exchange(base_url: str, head: bytes, chunks: list[bytes]) -> tuple[int, bytes]:
    """Send a request by hand (head, then body chunks while the server lets us) and read the
    answer; the server may answer and close before the body is sent."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)

    async def send() -> None:
        try:
            writer.write(head)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass

    sender = asyncio.create_task(send())
    try:
        raw_head = await reader.readuntil(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        length = next(
            int(v)
            for k, _, v in (ln.partition(": ") for ln in lines)
            if k.lower() == "content-length"
        )
        body = await reader.readexactly(length)
        return int(lines[0].split()[1]), body
    finally:
        sender.cancel()
        writer.close()
        await asyncio.gather(sender, return_exceptions=True)


def _head(gw: Gateway, body: bytes, framing: str) -> bytes:
    headers = _signed_raw(gw, body, None)
    lines = ["POST /v1/batches HTTP/1.1", "host: 127.0.0.1", framing]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_oversized_declared_body_is_refused_before_it_is_sent(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    big = bytes(3 * MiB)
    before = await row_counts(receiver.store)
    # only the head goes out: the answer must come without the body
    status, body = await _raw_exchange(
        receiver.base_url, _head(gw, big, f"content-length: {len(big)}"), []
    )
    assert (status, body) == (413, b'{"error":"too_large"}')
    assert await row_counts(receiver.store) == before
    assert (await receiver.send(gw, gw.next_batch())).status_code == 200


async def test_oversized_chunked_body_is_cut_at_the_cap(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    big = bytes(3 * MiB)
    piece = 64 * 1024
    chunks = [b"%x\r\n%s\r\n" % (piece, big[i : i + piece]) for i in range(0, len(big), piece)]
    chunks.append(b"0\r\n\r\n")
    before = await row_counts(receiver.store)
    status, body = await _raw_exchange(
        receiver.base_url, _head(gw, big, "transfer-encoding: chunked"), chunks
    )
    assert (status, body) == (413, b'{"error":"too_large"}')
    assert await row_counts(receiver.store) == before
    assert (await receiver.send(gw, gw.next_batch())).status_code == 200


async def test_every_auth_failure_has_the_same_bytes(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    answers = set()
    for attack, status in ATTACKS.values():
        if status == 401:
            r = await attack(receiver, gw)
            answers.add((r.status_code, r.content, r.headers["content-type"]))
    assert answers == {(401, UNAUTHORIZED_BYTES, "application/json")}


async def test_per_device_rate_limit_answers_429_with_retry_after(store: Store) -> None:
    async with running_receiver(store, Limits(device_rate_per_s=1.0, device_burst=2)) as rc:
        gw, other = await rc.enrolled("gw-1"), await rc.enrolled("gw-2")
        assert (await rc.send(gw, gw.next_batch())).status_code == 200
        assert (await rc.send(gw, gw.next_batch())).status_code == 200
        limited = gw.next_batch()
        r = await rc.send(gw, limited)
        assert (r.status_code, r.json(), r.headers["retry-after"]) == (
            429,
            {"error": "rate_limited"},
            "1",
        )
        assert (await rc.send(other, other.next_batch())).status_code == 200  # others unaffected
        rc.clock.advance(1000)
        assert (await rc.send(gw, limited)).status_code == 200


async def test_dropped_counters_reach_the_device_state(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    await receiver.send(gw, gw.next_batch(counters=Counters(5, 1, 2)))
    await receiver.send(gw, gw.next_batch(counters=Counters(1, 0, 0)))
    r = await receiver.client.get(
        "/v1/devices", headers={"authorization": "Bearer read-token-for-tests"}
    )
    [device] = [d for d in r.json()["devices"] if d["device_id"] == "gw-1"]
    assert device["dropped"] == {"buffer_full": 6, "damaged": 1, "rejected_invalid": 2}
    assert device["head_seq"] == 2


async def test_receiver_serves_others_while_one_device_sends_garbage(receiver: Receiver) -> None:
    bad, good = await receiver.enrolled("gw-bad"), await receiver.enrolled("gw-good")
    bomb = _zstd_bomb()
    junk = compress(b"\x93\x01\x02" * 1000, "gzip")

    async def attacker() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(base_url=receiver.base_url) as c:
            for i in range(30):
                body, enc = (bomb, "zstd") if i % 2 else (junk, "gzip")
                headers = bad.signed(
                    "POST", "/v1/batches", body, content_type=MEDIA_TYPE, encoding=enc
                )
                statuses.append(
                    (await c.post("/v1/batches", content=body, headers=headers)).status_code
                )
        return statuses

    async def gateway() -> list[int]:
        return [(await receiver.send(good, good.next_batch())).status_code for _ in range(20)]

    bad_statuses, good_statuses = await asyncio.gather(attacker(), gateway())
    assert set(bad_statuses) == {400, 413}
    assert good_statuses == [200] * 20
    assert (await row_counts(receiver.store))["batch"] == 20


async def test_no_exception_text_on_internal_errors(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_receiver(store) as rc:
        gw = await rc.enrolled("gw-1")

        async def broken(*args: object) -> None:
            raise RuntimeError("secret detail /etc/passwd")

        monkeypatch.setattr(store, "store_batch", broken)
        r = await rc.send(gw, gw.next_batch())
        assert (r.status_code, r.json()) == (500, {"error": "internal"})
        assert "secret" not in r.text
