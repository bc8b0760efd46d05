"""The source a config table describes: `build_source`, and the collaborators it hands out.

Kept apart from `agent.sources` (the contract, imported by `agent.config`) because it imports
`agent.config` and the source modules: the config schema must load without the sources' I/O
libraries, and no import cycle may run through the config. Only the runtime imports this.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config import (
    AsciiSourceConfig,
    McuSourceConfig,
    ModbusSourceConfig,
    SourceConfig,
    SyntheticSourceConfig,
)
from agent.sources import Source, Stamper
from agent.sources.mqtt.config import MqttSourceConfig
from agent.sources.opcua.config import OpcuaSourceConfig
from agent.watermarks import Watermarks


@dataclass(frozen=True, slots=True)
class SourceContext:
    """The agent's collaborators a source may need; the runtime builds one for all sources."""

    clock: Stamper  # the agent's clock (`edge-agent probe`: the host's)
    watermarks: Watermarks  # MCU positions, committed with the readings
    state_dir: Path | None = None  # where a source may keep small state files (MQTT)


def build_source(config: SourceConfig, context: SourceContext) -> Source:
    """The source a config table describes (the config is validated: this does not fail)."""
    # A source's module is imported only when a config asks for one: pymodbus, pyserial,
    # aiomqtt and asyncua cost every start time (and a Pi's memory) that a gateway without
    # them need not pay.
    if isinstance(config, SyntheticSourceConfig):
        from agent.sources.synthetic import SyntheticSource

        return SyntheticSource(config)
    if isinstance(config, ModbusSourceConfig):
        from agent.sources.modbus import ModbusSource

        return ModbusSource(config, clock=context.clock)
    if isinstance(config, AsciiSourceConfig):
        from agent.sources.ascii import AsciiSource

        return AsciiSource(config, clock=context.clock)
    if isinstance(config, McuSourceConfig):
        from agent.sources.mcu import McuSource

        return McuSource(config, clock=context.clock, watermarks=context.watermarks)
    if isinstance(config, MqttSourceConfig):
        from agent.sources.mqtt.source import MqttSource

        return MqttSource(config, clock=context.clock, state_dir=context.state_dir)
    if isinstance(config, OpcuaSourceConfig):
        from agent.sources.opcua.source import OpcuaSource

        return OpcuaSource(config, clock=context.clock)
    raise TypeError(f"no source for {type(config).__name__}")  # pragma: no cover
