"""Gaps of the Modbus source: the same events and log lines as every source (agent.sources.gaps),
against pymodbus' own server through a null modem of real ptys."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.sources import HostStamper
from agent.sources.gaps import DOWN_KIND, UP_KIND
from agent.sources.modbus import ModbusSource
from firmware_bridge.modbus_map import encode_words
from tests.agent.sources.conftest import Recorder
from tests.agent.sources.test_modbus import device, rtu_config, serial_meters
from tests.firmware_bridge.conftest import running
from wire.models import Quality

pytestmark = pytest.mark.serial


def events(sink: Recorder, kind: str) -> list[dict[str, object]]:
    return [dict(e.attrs) for e in sink.events if e.kind == kind]


async def test_unplugged_adapter_is_one_down_and_one_up_with_its_duration(
    links: Path, sink: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.modbus")
    point = {"metric": "v", "address": 0, "type": "float32"}
    cfg = rtu_config(
        links, [{"name": "m", "unit_id": 1, "poll_interval_ms": 50, "points": [point]}]
    )
    source = ModbusSource(cfg, clock=HostStamper())
    async with (
        serial_meters(links, {1: device(encode_words(7.0, "float32"))}) as modem,
        running(source.run(sink), "modbus"),
    ):
        await sink.wait_for(lambda: len(sink.readings) >= 3)
        await modem.cut("b")
        await sink.wait_for(lambda: bool(events(sink, DOWN_KIND)))
        await asyncio.sleep(0.5)
        await modem.splice("b")
        await sink.wait_for(lambda: bool(events(sink, UP_KIND)), within=15)
        n = len(sink.readings)
        await sink.wait_for(lambda: any(r.quality == Quality.GOOD for r in sink.readings[n:]))
    assert [e["reason"] for e in events(sink, DOWN_KIND)] == ["link_lost"]
    (up,) = events(sink, UP_KIND)
    assert isinstance(up["down_ms"], int)
    assert up["down_ms"] >= 500
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.sources.modbus"]
    assert len([m for m in lines if m.startswith("modbus: lost (link_lost")]) == 1
    assert len([m for m in lines if m.startswith("modbus: back after")]) == 1


async def test_a_dead_unit_is_a_gap_of_that_unit_only(links: Path, sink: Recorder) -> None:
    cfg = rtu_config(
        links,
        [
            {
                "name": "alive",
                "unit_id": 1,
                "poll_interval_ms": 50,
                "points": [{"metric": "a", "address": 0, "type": "float32"}],
            },
            {
                "name": "dead",
                "unit_id": 9,
                "poll_interval_ms": 50,
                "points": [{"metric": "d", "address": 0}],
            },
        ],
        down_after_failures=2,
        down_retry_ms=60_000,
    )
    source = ModbusSource(cfg, clock=HostStamper())
    async with (
        serial_meters(links, {1: device(encode_words(1.0, "float32"))}),
        running(source.run(sink), "modbus"),
    ):
        await sink.wait_for(lambda: bool(events(sink, DOWN_KIND)))
        await sink.wait_for(lambda: len(sink.readings) >= 20)
    (down,) = events(sink, DOWN_KIND)
    assert (down["reason"], down["part"]) == ("unit_down", "dead")
    assert events(sink, UP_KIND) == []
