"""The MQTT source's gap: a lost broker is the same `source_down` / `source_up` pair as every
source's (agent.sources.gaps), next to its own "lost the broker" and "back after" lines."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.sources.gaps import DOWN_KIND, UP_KIND
from agent.sources.mqtt.source import MqttSource
from tests.agent.sources.mqtt.test_source import (
    FakeSink,
    id_rule,
    own_broker,
    source_config,
    source_running,
    unique_client,
)
from tests.firmware_bridge.conftest import wait_until

pytestmark = pytest.mark.mqtt


async def test_a_lost_broker_is_one_down_and_one_up_with_its_duration(tmp_path, caplog):
    sink = FakeSink()
    with own_broker(tmp_path / "broker") as broker:
        source = MqttSource(source_config(broker.url, unique_client(), [id_rule("g/{d}")]))
        with caplog.at_level(logging.INFO, logger="agent.sources.mqtt.source"):
            async with source_running(source, sink):
                await asyncio.to_thread(broker.stop)
                await wait_until(lambda: any(e.kind == DOWN_KIND for e in sink.events), 10)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(broker.start)
                await wait_until(lambda: any(e.kind == UP_KIND for e in sink.events), 15)
    kinds = [e.kind for e in sink.events]
    assert kinds == [DOWN_KIND, UP_KIND]
    down, up = (dict(e.attrs) for e in sink.events)
    assert down["reason"] == "broker_lost"
    assert down["source"] == up["source"] == source.name
    assert isinstance(up["down_ms"], int)
    assert up["down_ms"] >= 500
    assert caplog.text.count("lost the broker") == 1
    assert caplog.text.count("back after") == 1
