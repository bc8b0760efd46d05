"""Keys where it counts (issue 12, observed 7): unknown key ids are negatively cached, an address
that keeps failing authentication is limited before any work, and a revocation or a disabling
that lands between a batch's authentication and its commit refuses the batch (403), on both
stores."""

from __future__ import annotations

from typing import Any, cast

from cloud.config import Limits
from cloud.responses import UNAUTHORIZED_BYTES
from cloud.storage.batches import BatchMeta, BatchResult
from cloud.storage.devices import DeviceStatus, KeyRecord
from cloud.storage.store import Store
from tests.cloud.conftest import running_receiver
from tests.cloud.helpers import Gateway, register, row_counts
from wire.models import Batch


class Spy:
    """The real store, with a hook run inside `store_batch` before the transaction (after the
    receiver authenticated the request), and a count of key look-ups."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.key_lookups = 0
        self.before_batch: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def get_key(self, keyid: str) -> KeyRecord | None:
        self.key_lookups += 1
        return await self.store.get_key(keyid)

    async def store_batch(self, meta: BatchMeta, batch: Batch) -> BatchResult:
        if self.before_batch is not None:
            await self.before_batch(meta)
        return await self.store.store_batch(meta, batch)


async def test_a_key_revoked_after_authentication_stores_nothing(store: Store) -> None:
    spy = Spy(store)
    async with running_receiver(cast(Store, spy)) as rx:
        gw = await rx.enrolled("gw-1")
        assert (await rx.send(gw, gw.next_batch())).status_code == 200

        async def revoke(meta: BatchMeta) -> None:
            await store.revoke_key(meta.keyid, rx.clock.ms)

        spy.before_batch = revoke
        before = await row_counts(store)
        r = await rx.send(gw, gw.next_batch())
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "forbidden"
        assert await row_counts(store) == before
        spy.before_batch = None
        r = await rx.send(gw, gw.build(2, gw.head_digest))  # and from now on, at the door
        assert r.status_code == 403


async def test_a_device_disabled_after_authentication_stores_nothing(store: Store) -> None:
    spy = Spy(store)
    async with running_receiver(cast(Store, spy)) as rx:
        gw = await rx.enrolled("gw-1")

        async def disable(meta: BatchMeta) -> None:
            await store.set_device_status(meta.device_id, DeviceStatus.DISABLED)

        spy.before_batch = disable
        before = await row_counts(store)
        r = await rx.send(gw, gw.next_batch(n_readings=3000))  # PostgreSQL's COPY path
        assert r.status_code == 403, r.text
        assert await row_counts(store) == before
        assert rx.metrics.batches.value("key_refused") == 1


async def test_unknown_key_ids_are_negatively_cached(store: Store) -> None:
    spy = Spy(store)
    async with running_receiver(cast(Store, spy)) as rx:
        stranger = Gateway("gw-1", base_url=rx.base_url)
        first = stranger.next_batch()
        for _ in range(5):
            r = await rx.send(stranger, first)
            assert (r.status_code, r.content) == (401, UNAUTHORIZED_BYTES)
        assert spy.key_lookups == 1
        # enrolled through another receiver (straight into the store): known within 5 s
        await register(store, stranger)
        rx.clock.advance(4_000)
        assert (await rx.send(stranger, first)).status_code == 401
        assert spy.key_lookups == 1
        rx.clock.advance(1_000)
        r = await rx.send(stranger, first)
        assert r.status_code == 200, r.text
        assert spy.key_lookups == 2


async def test_enrolment_through_this_receiver_is_seen_at_once(store: Store) -> None:
    spy = Spy(store)
    async with running_receiver(cast(Store, spy)) as rx:
        gw = Gateway("gw-1", base_url=rx.base_url)
        assert (await rx.send(gw, gw.build(1, gw.head_digest))).status_code == 401
        headers, body = gw.enroll_request(await rx.token("gw-1"))
        assert (await rx.client.post("/v1/enroll", content=body, headers=headers)).is_success
        assert (await rx.send(gw, gw.next_batch())).status_code == 200


async def test_the_negative_cache_is_bounded(store: Store) -> None:
    spy = Spy(store)
    limits = Limits(device_burst=10_000, unknown_key_cache_max=3, auth_failure_burst=1000)
    async with running_receiver(cast(Store, spy), limits) as rx:
        strangers = [Gateway(f"gw-{i}", base_url=rx.base_url) for i in range(4)]
        for gw in strangers:
            assert (await rx.send(gw, gw.next_batch())).status_code == 401
        assert spy.key_lookups == 4
        assert (await rx.send(strangers[3], strangers[3].next_batch())).status_code == 401
        assert spy.key_lookups == 4  # the newest three are remembered
        assert (await rx.send(strangers[0], strangers[0].next_batch())).status_code == 401
        assert spy.key_lookups == 5  # the oldest was forgotten


async def test_an_address_that_keeps_failing_is_limited_before_any_work(store: Store) -> None:
    spy = Spy(store)
    limits = Limits(device_burst=10_000, auth_failure_burst=5, auth_failure_rate_per_s=0.5)
    async with running_receiver(cast(Store, spy), limits) as rx:
        gw = await rx.enrolled("gw-1")
        for _ in range(3):  # authenticated requests cost the address nothing
            assert (await rx.send(gw, gw.next_batch())).status_code == 200
        lookups = spy.key_lookups
        for i in range(5):  # five made-up key ids: five look-ups, five 401
            stranger = Gateway(f"x-{i}", base_url=rx.base_url)
            assert (await rx.send(stranger, stranger.next_batch())).status_code == 401
        assert spy.key_lookups == lookups + 5
        stranger = Gateway("x-5", base_url=rx.base_url)
        r = await rx.send(stranger, stranger.next_batch())
        assert r.status_code == 429
        assert (r.json()["error"], r.headers["retry-after"]) == ("rate_limited", "2")
        assert spy.key_lookups == lookups + 5  # refused before the look-up
        r = await rx.client.get("/v1/chain/head", headers=gw.signed("GET", "/v1/chain/head", b""))
        assert r.status_code == 429  # the address's budget, whatever key it signs with
        rx.clock.advance(2_000)
        assert (await rx.send(gw, gw.next_batch())).status_code == 200
