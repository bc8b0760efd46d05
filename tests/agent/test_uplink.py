"""The uplink against an in-process fake receiver: every documented status, mapped once."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import RefusedError, SeqGapError, TransientUplinkError
from agent.uplink import Uplink, make_client, parse_retry_after
from tests.agent.fakes import SERVER_MS, FakeReceiver, reply
from tests.agent.helpers import T0, cut, open_test_buffer


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def body(tmp_path):
    buf = open_test_buffer(tmp_path / "b.db")
    from tests.agent.helpers import key as series_key

    buf.commit([(1, T0 + i, float(i), 0) for i in range(100)], new_series=[(1, series_key(1))])
    entry = cut(buf)
    buf.close()
    return entry


async def make_uplink(receiver: FakeReceiver, key) -> tuple[Uplink, httpx.AsyncClient]:
    client = make_client(ca_file=None, trust_env=False, timeout_s=5, transport=receiver.transport())
    uplink = Uplink(client, base_url="https://ingest.test/", key=key, now_ms=lambda: T0)
    return uplink, client


async def test_batch_is_signed_digested_gzipped_and_acked(key, body):
    receiver = FakeReceiver(key)
    uplink, client = await make_uplink(receiver, key)
    async with client:
        ack = await uplink.send_batch(body.seq, body.body)
    assert (ack.seq, ack.status, ack.server_time_ms) == (1, "stored", SERVER_MS)
    request = receiver.requests[0]
    assert str(request.url) == "https://ingest.test/v1/batches"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/vnd.tierless.batch.v1+msgpack"
    assert 'tag="tierless-batch-v1"' in request.headers["signature-input"]
    assert receiver.bodies == [body.body]
    assert ack.wire_bytes > len(request.content)  # headers counted too


async def test_zstd_once_the_receiver_offers_it_and_gzip_after_a_415(key, body):
    receiver = FakeReceiver(key, accept_encoding="zstd, gzip")
    uplink, client = await make_uplink(receiver, key)
    async with client:
        await uplink.send_batch(body.seq, body.body)  # gzip: nothing heard yet
        assert receiver.requests[-1].headers["content-encoding"] == "gzip"
        await uplink.send_batch(body.seq, body.body)
        assert receiver.requests[-1].headers["content-encoding"] == "zstd"
        receiver.script = [lambda r: reply(415, {"error": "unsupported_media_type"})]
        with pytest.raises(TransientUplinkError) as info:
            await uplink.send_batch(body.seq, body.body)
        assert info.value.cause == "encoding"
        await uplink.send_batch(body.seq, body.body)
        assert receiver.requests[-1].headers["content-encoding"] == "gzip"


@pytest.mark.parametrize(
    ("status", "payload", "code"),
    [
        (400, {"error": "bad_request", "message": "x"}, "bad_request"),
        (401, {"error": "unauthorized", "message": "request not authenticated"}, "unauthorized"),
        (403, {"error": "forbidden", "message": "revoked"}, "forbidden"),
        (409, {"error": "chain_conflict", "expected_seq": 3, "reason": "fork"}, "chain_conflict"),
        (413, {"error": "too_large"}, "too_large"),
        (415, {"error": "unsupported_media_type"}, "unsupported_media_type"),
        (404, {"error": "not_found"}, "not_found"),
    ],
)
async def test_refusals_stop_with_status_and_code(key, body, status, payload, code):
    receiver = FakeReceiver(key, script=[lambda r: reply(status, payload)])
    uplink, client = await make_uplink(receiver, key)
    async with client:
        with pytest.raises(RefusedError) as info:
            await uplink.send_batch(body.seq, body.body)
    assert (info.value.status, info.value.code) == (status, code)
    assert str(info.value).startswith(f"{status} {code} (")


@pytest.mark.parametrize(
    "response",
    [
        lambda r: httpx.Response(200, text="<html>Welcome to nginx!</html>"),
        lambda r: reply(200, {"status": "stored", "seq": 7}),  # another batch's ack
        lambda r: reply(200, {"status": "ok"}),
        lambda r: reply(200, {}),
        lambda r: reply(200, {"status": "stored"}),
        lambda r: reply(200, {"status": "stored", "seq": "1"}),
        lambda r: reply(200, {"status": "STORED", "seq": 1}),
        lambda r: httpx.Response(200, json=[{"status": "stored", "seq": 1}]),
    ],
)
async def test_a_200_that_is_not_this_batchs_ack_deletes_nothing(key, body, response):
    """A wrong cloud.url answering 200 must never count as an acknowledgement."""
    receiver = FakeReceiver(key, script=[response])
    uplink, client = await make_uplink(receiver, key)
    async with client:
        with pytest.raises(RefusedError) as info:
            await uplink.send_batch(body.seq, body.body)
    assert (info.value.status, info.value.code) == (200, "not_an_ack")


async def test_an_ack_may_carry_fields_this_agent_does_not_know(key, body):
    """A newer receiver may add fields to its acknowledgement (wire.http: tolerant decoding)."""
    answer = {"status": "duplicate", "seq": body.seq, "server_time_ms": 5, "region": "eu"}
    receiver = FakeReceiver(key, script=[lambda r: reply(200, answer)])
    uplink, client = await make_uplink(receiver, key)
    async with client:
        ack = await uplink.send_batch(body.seq, body.body)
    assert (ack.seq, ack.status, ack.server_time_ms) == (body.seq, "duplicate", 5)


async def test_403_reads_well_in_status(key, body):
    receiver = FakeReceiver(key, script=[lambda r: reply(403, {"error": "forbidden"})])
    uplink, client = await make_uplink(receiver, key)
    async with client:
        with pytest.raises(RefusedError) as info:
            await uplink.send_batch(body.seq, body.body)
    assert str(info.value) == "403 forbidden (device revoked or disabled; re-enrolment needed)"


@pytest.mark.parametrize(
    ("status", "headers", "cause", "after"),
    [
        (429, {"retry-after": "7"}, "rate_limited", 7.0),
        (503, {"retry-after": "2"}, "server", 2.0),
        (500, {}, "server", None),
        (502, {}, "server", None),
        (504, {}, "server", None),
    ],
)
async def test_transient_statuses_carry_cause_and_retry_after(
    key, body, status, headers, cause, after
):
    receiver = FakeReceiver(key, script=[lambda r: reply(status, {"error": "x"}, headers)])
    uplink, client = await make_uplink(receiver, key)
    async with client:
        with pytest.raises(TransientUplinkError) as info:
            await uplink.send_batch(body.seq, body.body)
    assert (info.value.cause, info.value.retry_after_s) == (cause, after)


async def test_seq_gap_names_the_expected_seq(key, body):
    receiver = FakeReceiver(
        key, script=[lambda r: reply(409, {"error": "seq_gap", "expected_seq": 5})]
    )
    uplink, client = await make_uplink(receiver, key)
    async with client:
        with pytest.raises(SeqGapError) as info:
            await uplink.send_batch(body.seq, body.body)
    assert info.value.expected_seq == 5


async def test_transport_errors_are_transient(key, body):
    def boom(request):
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(
        ca_file=None, trust_env=False, timeout_s=5, transport=httpx.MockTransport(boom)
    )
    uplink = Uplink(client, base_url="https://ingest.test", key=key, now_ms=lambda: T0)
    async with client:
        with pytest.raises(TransientUplinkError) as info:
            await uplink.send_batch(body.seq, body.body)
    assert info.value.cause == "transport"
    assert "ConnectError" in str(info.value)


async def test_chain_head_is_signed_and_decoded(key):
    receiver = FakeReceiver(key, head=(41, bytes(range(32))))
    uplink, client = await make_uplink(receiver, key)
    async with client:
        head = await uplink.chain_head()
    assert (head.seq, head.digest, head.server_time_ms) == (41, bytes(range(32)), SERVER_MS)
    assert receiver.requests[0].method == "GET"


async def test_malformed_head_is_transient(key):
    receiver = FakeReceiver(key, script=[lambda r: reply(200, {"seq": "x"})])
    uplink, client = await make_uplink(receiver, key)
    async with client:
        with pytest.raises(TransientUplinkError, match="malformed"):
            await uplink.chain_head()


def test_retry_after_forms():
    assert parse_retry_after(None) is None
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("999999") == 3600.0  # capped
    assert parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(future) or 0) <= 30
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_bad_ca_file_is_a_config_error(tmp_path):
    from agent.errors import ConfigError

    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cloud.ca_file: cannot load"):
        make_client(ca_file=str(bad), trust_env=False, timeout_s=1)
