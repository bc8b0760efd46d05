"""docs/configuration.md names every source type and every key of every source's tables, so a
key added to a config struct without a line in the docs fails here."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from agent.config import SourceConfig, SyntheticSourceConfig
from agent.sources.mqtt.config import MqttSourceConfig
from agent.sources.mqtt.mapping import MqttRule, MqttValue
from agent.sources.mqtt.presets import PRESETS
from firmware_bridge.ascii_protocol import AsciiConfig, AsciiValue, ChecksumConfig, EventConfig
from firmware_bridge.mcu_config import ChannelConfig, McuConfig
from firmware_bridge.modbus_config import DeviceConfig, ModbusConfig, PointConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text("utf-8")
STRUCTS = [
    SyntheticSourceConfig,
    ModbusConfig,
    DeviceConfig,
    PointConfig,
    AsciiConfig,
    AsciiValue,
    ChecksumConfig,
    EventConfig,
    McuConfig,
    ChannelConfig,
    MqttSourceConfig,
    MqttRule,
    MqttValue,
]


def test_every_source_type_has_a_section() -> None:
    types = [t.__struct_config__.tag for t in SourceConfig.__args__]
    assert "mqtt" in types
    for tag in types:
        assert f'### `type = "{tag}"`' in DOC or f'#### `type = "{tag}"`' in DOC, tag


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.__name__)
def test_every_key_is_documented(struct: type[msgspec.Struct]) -> None:
    missing = [f for f in struct.__struct_fields__ if f"`{f}`" not in DOC]
    assert missing == []


def test_every_mqtt_preset_is_named() -> None:
    assert [p for p in PRESETS if f"`{p}`" not in DOC] == []
