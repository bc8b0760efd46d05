"""Pushed configs on both backends: versions per device, one transaction, the audit."""

from __future__ import annotations

import pytest

from cloud.errors import IntegrityError
from cloud.storage.store import Store
from tests.cloud.helpers import START_MS, Gateway, register


def signer(calls):
    def sign(device: str, version: int) -> str:
        calls.append((device, version))
        return f"sig-{device}-{version}"

    return sign


async def test_versions_count_per_device_and_the_newest_is_desired(store: Store) -> None:
    for name in ("gw-1", "gw-2"):
        await register(store, Gateway(name))
    calls: list[tuple[str, int]] = []
    first = await store.push_config(
        ["gw-1", "gw-2"], b"a", "sha-a", signer(calls), at_ms=1, actor="admin", target="tag x=y"
    )
    assert first == [("gw-1", 1), ("gw-2", 1)]
    second = await store.push_config(
        ["gw-2"], b"b", "sha-b", signer(calls), at_ms=2, actor="admin", target="device gw-2"
    )
    assert second == [("gw-2", 2)]
    assert sorted(calls) == [("gw-1", 1), ("gw-2", 1), ("gw-2", 2)]
    gw2 = await store.desired_config("gw-2")
    assert gw2 is not None
    assert (gw2.version, gw2.sha256, gw2.body, gw2.signature) == (2, "sha-b", b"b", "sig-gw-2-2")
    assert (gw2.pushed_ms, gw2.pushed_by) == (2, "admin")
    assert [(d.device_id, d.version) for d in await store.desired_configs()] == [
        ("gw-1", 1),
        ("gw-2", 2),
    ]
    assert await store.desired_config("gw-3") is None
    audit = await store.config_audit(10)
    assert [(a.at_ms, a.target, a.sha256, a.devices) for a in audit] == [
        (2, "device gw-2", "sha-b", 1),
        (1, "tag x=y", "sha-a", 2),
    ]


async def test_an_unknown_device_writes_nothing(store: Store) -> None:
    await register(store, Gateway("gw-1"))
    with pytest.raises(IntegrityError, match="gw-9"):
        await store.push_config(
            ["gw-1", "gw-9"], b"a", "s", signer([]), at_ms=1, actor="a", target="t"
        )
    assert await store.desired_configs() == []
    assert await store.config_audit(10) == []


async def test_devices_are_selected_by_the_tags_of_their_series(store: Store) -> None:
    a, b = Gateway("gw-a"), Gateway("gw-b")
    for gw in (a, b):
        await register(store, gw)
    frozen = a.next_batch()  # series tagged site=plant-1 (tests.cloud.helpers.make_series)
    await store.store_batch(a.meta(frozen, received_ms=START_MS), frozen.batch)
    assert await store.devices_with_tag("site", "plant-1") == ["gw-a"]
    assert await store.devices_with_tag("area", "hall-0") == ["gw-a"]
    assert await store.devices_with_tag("site", "plant-2") == []
