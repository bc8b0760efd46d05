"""Modbus configuration: buses, devices, register points and device profiles, validated once.

A bus is one serial line (RTU) or one TCP endpoint with one or more devices (unit ids). A device
lists its points directly, or names a profile (`profile = "eastron-sdm630"`, a file in
`firmware_bridge/profiles/`, or a path to a .toml file of the same shape) and optionally picks
some of its metrics (`include`) and adds its own points. `resolve()` checks everything at once
and returns the read plan; problems are reported together as one ConfigError, each naming the
device and point.

A profile file has a `[profile]` table (name, manufacturer, model, `source` — the public document
the addresses come from — and defaults for `function`, `type`, `word_order`, `byte_order`,
`max_registers`, `medium`) and `[[points]]` tables of the same shape as a device's points.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from firmware_bridge.errors import ConfigError
from firmware_bridge.modbus_map import REGISTERS, DataType, Order, Point, ReadRequest, plan_requests
from firmware_bridge.port_config import PortConfig
from wire.units import Kind, default_kind, kind_problem, limits_for, range_problem, unit_problem

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Tag = Annotated[str, msgspec.Meta(max_length=128)]
_Ms = Annotated[int, msgspec.Meta(ge=1, le=86_400_000)]


class PointConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    metric: _Name
    address: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    type: DataType | None = None
    function: Literal[3, 4] | None = None
    word_order: Order | None = None
    byte_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: _Tag = ""  # a UCUM code from wire.units.UNITS
    kind: Kind | None = None  # None: cumulative in a counter unit, gauge otherwise
    min: float | None = None  # plausible range, within the unit's physical limits
    max: float | None = None
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""
    note: str = ""  # where in the source document, caveats; not used at run time


class DeviceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: _Name
    unit_id: Annotated[int, msgspec.Meta(ge=0, le=255)]
    profile: str | None = None
    include: list[str] = msgspec.field(default_factory=list)
    points: list[PointConfig] = msgspec.field(default_factory=list)
    poll_interval_ms: _Ms = 1000
    metric_prefix: _Tag = ""
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""


class ModbusConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One bus. For RTU, `port` (baud rate, parity, … of the line); for TCP, `host`."""

    name: _Name = "modbus"
    transport: Literal["rtu", "tcp"] = "rtu"
    port: PortConfig | None = None
    host: str = ""
    tcp_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 502
    timeout_ms: _Ms = 1000
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    max_registers: Annotated[int, msgspec.Meta(ge=1, le=125)] = 125
    max_gap: Annotated[int, msgspec.Meta(ge=0, le=124)] = 0
    down_after_failures: Annotated[int, msgspec.Meta(ge=1)] = 3
    down_retry_ms: _Ms = 30_000
    reconnect_initial_ms: _Ms = 500
    reconnect_max_ms: _Ms = 30_000
    devices: list[DeviceConfig] = msgspec.field(default_factory=list)


class ProfileMeta(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: _Name
    manufacturer: str
    model: str
    source: Annotated[str, msgspec.Meta(min_length=1)]
    notes: str = ""
    function: Literal[3, 4] = 3
    type: DataType = "u16"
    word_order: Order = "big"
    byte_order: Order = "big"
    max_registers: Annotated[int, msgspec.Meta(ge=1, le=125)] = 125
    medium: _Tag = ""


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    profile: ProfileMeta
    points: list[PointConfig]


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """A device ready to poll: its points and the requests that read them."""

    name: str
    unit_id: int
    poll_interval_ms: int
    points: tuple[Point, ...]
    requests: tuple[ReadRequest, ...]


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in firmware_bridge/profiles/."""
    root = resources.files("firmware_bridge.profiles")
    return sorted(p.name[:-5].replace("_", "-") for p in root.iterdir() if p.name.endswith(".toml"))


def load_profile(name: str, *, base_dir: Path | None = None) -> Profile:
    """A shipped profile by name, or a .toml file by path (relative to `base_dir`)."""
    try:
        if name.endswith(".toml"):
            path = Path(name) if base_dir is None else base_dir / name
            text = path.read_text(encoding="utf-8")
        else:
            res = resources.files("firmware_bridge.profiles") / f"{name.replace('-', '_')}.toml"
            if not res.is_file():
                known = ", ".join(builtin_profiles())
                raise ConfigError([f"profile {name!r}: no such profile (known: {known})"])
            text = res.read_text(encoding="utf-8")
        return msgspec.convert(tomllib.loads(text), Profile)
    except OSError as exc:
        raise ConfigError([f"profile {name!r}: cannot read: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"profile {name!r}: not valid TOML: {exc}"]) from exc
    except msgspec.ValidationError as exc:
        raise ConfigError([f"profile {name!r}: {exc}"]) from exc


def resolve(
    config: ModbusConfig, *, base_dir: Path | None = None, where: str | None = None
) -> list[DevicePlan]:
    """Every device's points and read plan; ConfigError listing every problem found.

    Each problem starts with the key path it is about, below `where` (default `modbus '<name>'`;
    the agent passes `sources[i]`), e.g. `sources[0].devices[1].unit_id: ...`.
    """
    problems: list[str] = []
    where = where if where is not None else f"modbus {config.name!r}"
    if config.transport == "rtu" and config.port is None:
        problems.append(f"{where}.port: missing (transport rtu needs `port`)")
    if config.transport == "tcp" and not config.host:
        problems.append(f"{where}.host: missing (transport tcp needs `host`)")
    if not config.devices:
        problems.append(f"{where}.devices: no devices")
    plans: list[DevicePlan] = []
    seen_units: set[int] = set()
    seen_names: set[str] = set()
    for i, dev in enumerate(config.devices):
        dwhere = f"{where}.devices[{i}]"
        if dev.unit_id in seen_units:
            problems.append(f"{dwhere}.unit_id: unit_id {dev.unit_id} appears twice on one bus")
        if config.transport == "rtu" and not 1 <= dev.unit_id <= 247:
            problems.append(f"{dwhere}.unit_id: an RTU unit_id is 1..247, not {dev.unit_id}")
        if dev.name in seen_names:
            problems.append(f"{dwhere}.name: device name appears twice ({dev.name!r})")
        seen_units.add(dev.unit_id)
        seen_names.add(dev.name)
        plan = _device_plan(config, dev, dwhere, problems, base_dir)
        if plan is not None:
            plans.append(plan)
    seen_series: dict[tuple[str, ...], str] = {}
    for plan in plans:
        for p in plan.points:
            key = (p.metric, p.unit, p.site, p.area, p.process, p.medium)
            other = seen_series.get(key)
            if other is not None and other != plan.name:
                problems.append(
                    f"{where}.devices: devices {other!r} and {plan.name!r} both make series "
                    f"{p.metric!r} with the same unit and tags; set metric_prefix or a "
                    "distinguishing tag"
                )
            seen_series[key] = plan.name
    if problems:
        raise ConfigError(problems)
    return plans


def _device_plan(
    config: ModbusConfig,
    dev: DeviceConfig,
    where: str,
    problems: list[str],
    base_dir: Path | None,
) -> DevicePlan | None:
    meta: ProfileMeta | None = None
    sources: list[PointConfig] = []
    if dev.profile:
        try:
            profile = load_profile(dev.profile, base_dir=base_dir)
        except ConfigError as exc:
            problems.extend(f"{where}.profile: {p}" for p in exc.problems)
            return None
        meta = profile.profile
        known = {p.metric for p in profile.points}
        missing = [m for m in dev.include if m not in known]
        if missing:
            problems.append(
                f"{where}.include: include names unknown metrics {missing} of {dev.profile}"
            )
        sources = [p for p in profile.points if not dev.include or p.metric in dev.include]
    elif dev.include:
        problems.append(f"{where}.include: include needs a profile")
    from_profile = len(sources)
    sources += dev.points
    if not sources:
        problems.append(f"{where}.points: no points")
        return None
    points: list[Point] = []
    metrics: set[str] = set()
    for j, pc in enumerate(sources):
        point = _point(dev, meta, pc)
        # a profile's point is reported at `profile`, a device's own at its index
        own = j >= from_profile
        pwhere = f"{where}.points[{j - from_profile}]" if own else f"{where}.profile"
        if point.metric in metrics:
            at = f"{pwhere}.metric" if own else pwhere
            problems.append(f"{at}: metric {point.metric!r} appears twice")
        metrics.add(point.metric)
        if point.address + REGISTERS[point.dtype] > 65536:
            at = f"{pwhere}.address" if own else pwhere
            problems.append(f"{at}: {pc.metric} runs past register 65535")
        for key, problem in _declaration_problems(point.metric, pc):
            at = f"{pwhere}.{key}" if own else f"{pwhere} ({pc.metric})"
            problems.append(f"{at}: {problem}")
        points.append(point)
    max_registers = min(config.max_registers, meta.max_registers if meta else 125)
    requests = plan_requests(
        dev.unit_id, points, max_registers=max_registers, max_gap=config.max_gap
    )
    return DevicePlan(dev.name, dev.unit_id, dev.poll_interval_ms, tuple(points), tuple(requests))


def _declaration_problems(metric: str, pc: PointConfig) -> list[tuple[str, str]]:
    """The unit, kind and range checks of one point: (key, problem) pairs."""
    out = []
    unit = unit_problem(pc.unit)
    if unit is not None:
        out.append(("unit", unit))
    kind = kind_problem(metric, pc.unit, pc.kind or default_kind(pc.unit))
    if kind is not None:
        out.append(("kind", kind))
    bounds = range_problem(pc.unit, pc.min, pc.max)
    if bounds is not None:
        out.append(("min", bounds))
    return out


def _point(dev: DeviceConfig, meta: ProfileMeta | None, pc: PointConfig) -> Point:
    kind = pc.kind or default_kind(pc.unit)
    return Point(
        metric=dev.metric_prefix + pc.metric,
        function=pc.function or (meta.function if meta else 3),
        address=pc.address,
        dtype=pc.type or (meta.type if meta else "u16"),
        word_order=pc.word_order or (meta.word_order if meta else "big"),
        byte_order=pc.byte_order or (meta.byte_order if meta else "big"),
        scale=pc.scale,
        offset=pc.offset,
        unit=pc.unit,
        site=pc.site or dev.site,
        area=pc.area or dev.area,
        process=pc.process or dev.process,
        medium=pc.medium or dev.medium or (meta.medium if meta else ""),
        kind=kind,
        limits=limits_for(pc.unit, kind, pc.min, pc.max),
    )
