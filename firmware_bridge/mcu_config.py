"""One MCU running our firmware, as the configuration describes it: structs only, no I/O.

`channels` maps a channel number to the series its readings go to; a channel not listed takes the
metric and unit its CHANNEL_INFO announces (or `<name>_ch<n>`). The timing fields bound how long
the bridge waits for each step of the protocol (docs/firmware-protocol.md).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from firmware_bridge.port_config import PortConfig

_Tag = Annotated[str, msgspec.Meta(max_length=128)]
_Ms = Annotated[int, msgspec.Meta(ge=1, le=3_600_000)]


class ChannelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    unit: _Tag = ""
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""


class McuConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One MCU on one port. `channels` maps a channel number ("0", "1", …) to its series."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "mcu"
    port: PortConfig
    window: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 512
    hello_timeout_ms: _Ms = 1000
    probe_after_ms: _Ms = 3000  # silence before a TIME_SYNC probe
    dead_after_ms: _Ms = 10_000  # silence before the port is closed and reopened
    time_sync_interval_ms: _Ms = 60_000
    resend_timeout_ms: _Ms = 500
    ack_repeat_ms: _Ms = 1000
    reopen_initial_ms: _Ms = 200
    reopen_max_ms: _Ms = 30_000
    channels: dict[str, ChannelConfig] = msgspec.field(default_factory=dict)
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""
