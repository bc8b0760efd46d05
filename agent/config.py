"""The agent's configuration: one TOML file, validated once at start into frozen typed structs.

Invariants:
- unknown keys are errors, at every level (a typo must not silently fall back to a default);
- every problem in a file is reported at once, one line each, as `FILE: key.path: reason`
  (`agent.toml: sources[1].rate_hz: expected a number > 0, got -1`);
- units are in names (`_ms`, `_s`, `_mb`, `_hz`); relative paths are relative to the file;
- secrets never appear here: the device key is named by `device.key_file` and read by
  `agent.keyfile`, which refuses a file that others can read;
- plain HTTP is accepted only to a loopback host unless `cloud.allow_insecure_http` says so.

`sources` is a list of tables tagged by `type`; each source type is one struct here, and a new
type is one more struct in `SourceConfig` plus, if types alone cannot say everything, one entry in
`_SOURCE_CHECKS`. The serial sources (`modbus`, `ascii`, `mcu`) are firmware_bridge's own config
structs with the tag added, so the bridge's checks (register maps, profiles, regular expressions)
run here, once, with their problems reported at `sources[i].<key>` like any other.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from agent.errors import ConfigError
from agent.sources.mqtt.config import MqttSourceConfig, mqtt_config_problems, resolve_mqtt_paths
from agent.sources.opcua.config import (
    OpcuaSourceConfig,
    opcua_config_problems,
    resolve_opcua_paths,
)
from firmware_bridge.ascii_protocol import AsciiConfig, compile_spec
from firmware_bridge.errors import ConfigError as BridgeConfigError
from firmware_bridge.mcu_config import McuConfig
from firmware_bridge.modbus_config import ModbusConfig, resolve
from firmware_bridge.port_config import PortConfig
from firmware_bridge.tickets import ticket_problems
from hostio.loopback import is_loopback

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Tag = Annotated[str, msgspec.Meta(max_length=128)]
_PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every table: frozen, unknown keys refused."""


class DeviceConfig(_Section, frozen=True):
    id: _Name
    key_file: str
    # The kernel's boot id: monotonic time is comparable across agent restarts within one boot,
    # which is what lets readings taken with an untrusted clock be corrected later.
    boot_id_file: str = "/proc/sys/kernel/random/boot_id"


class CloudConfig(_Section, frozen=True):
    url: str
    ca_file: str | None = None
    allow_insecure_http: bool = False
    trust_env: bool = False  # honour HTTPS_PROXY & co. from the environment
    timeout_s: _PositiveFloat = 30.0
    batch_max_readings: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20_000
    # Uncompressed body size cap; the receiver takes up to 8 MiB decoded and 2 MiB on the wire.
    # The top is 64 KiB under the wire cap: incompressible values (raw float64 noise) grow a
    # little under gzip, and a frozen batch the receiver refuses as too large could never go.
    batch_max_bytes: Annotated[int, msgspec.Meta(ge=4096, le=2 * 1024 * 1024 - 65536)] = 1024 * 1024
    batch_interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 5000
    live_every_batches: Annotated[int, msgspec.Meta(ge=0)] = 4
    retry_initial_ms: Annotated[int, msgspec.Meta(ge=1)] = 500
    retry_max_s: _PositiveFloat = 300.0
    # Cap for failures that end when the receiver is back (refused/reset, timeout, 502-504):
    # short, so uploads resume within seconds; full jitter still spreads a fleet over it.
    retry_unavailable_max_s: _PositiveFloat = 5.0
    refused_recheck_s: _PositiveFloat = 900.0
    # How often the gateway reports its health (POST /v1/health); also at start and soon after
    # a source goes down or comes back. docs/fleet.md.
    health_interval_s: Annotated[float, msgspec.Meta(ge=1.0, le=86_400.0)] = 60.0
    # How long a pushed config must keep its restarted sources up, with an upload acknowledged,
    # before it is kept; else it is rolled back (agent.applier).
    config_apply_window_s: Annotated[float, msgspec.Meta(ge=0.1, le=3600.0)] = 30.0


class BufferConfig(_Section, frozen=True):
    path: str
    max_mb: _PositiveFloat = 256.0
    flush_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 1000
    flush_max_readings: Annotated[int, msgspec.Meta(ge=1)] = 10_000


class SyntheticSourceConfig(_Section, frozen=True, tag="test", tag_field="type"):
    """Meter-like counters at a fixed rate; for tests, demos and benchmarks (`type = "test"`)."""

    name: _Name = "test"
    rate_hz: _PositiveFloat = 1.0
    series: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    metric: _Name = "test_counter"
    unit: _Tag = "kWh"
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = "electricity"
    step: _PositiveFloat = 1.0
    # Stop after this many readings per series (0: never). Lets tests know exactly what was made.
    max_readings: Annotated[int, msgspec.Meta(ge=0)] = 0


class ModbusSourceConfig(ModbusConfig, frozen=True, tag="modbus", tag_field="type"):
    """Modbus RTU/TCP meters on one bus: `firmware_bridge.modbus_config.ModbusConfig`."""


class AsciiSourceConfig(AsciiConfig, frozen=True, tag="ascii", tag_field="type"):
    """A line-based ASCII instrument: `firmware_bridge.ascii_protocol.AsciiConfig`."""


class McuSourceConfig(McuConfig, frozen=True, tag="mcu", tag_field="type"):
    """One MCU running our firmware: `firmware_bridge.mcu_config.McuConfig`."""


# A tagged union on `type`: one more source type is one more member here.
SourceConfig = (
    SyntheticSourceConfig
    | ModbusSourceConfig
    | AsciiSourceConfig
    | McuSourceConfig
    | MqttSourceConfig
    | OpcuaSourceConfig
)


class MetricsConfig(_Section, frozen=True):
    listen: str = "127.0.0.1:9108"  # "" disables the endpoint


class ClockConfig(_Section, frozen=True):
    # auto: timesyncd's flag file if present, else the kernel's adjtimex state.
    # assume_synced: the host keeps time some other way (RTC + chrony, a test machine).
    # receiver_only: never trust the local clock; correct it against the receiver.
    sync_check: Literal["auto", "timesyncd", "adjtimex", "assume_synced", "receiver_only"] = "auto"
    check_interval_s: _PositiveFloat = 30.0
    timesyncd_flag_file: str = "/run/systemd/timesync/synchronized"


class Config(_Section, frozen=True):
    device: DeviceConfig
    cloud: CloudConfig
    buffer: BufferConfig
    sources: list[SourceConfig] = msgspec.field(default_factory=list)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    clock: ClockConfig = msgspec.field(default_factory=ClockConfig)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int


def load_config(path: str | Path) -> Config:
    """Read, validate and resolve a config file; ConfigError lists every problem found."""
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: not UTF-8 text"]) from exc
    return parse_config(text, name=name, base_dir=Path(path).resolve().parent)


def parse_config(text: str, *, name: str, base_dir: Path) -> Config:
    """Validate TOML text; paths in the result are resolved against `base_dir`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{name}: not valid TOML: {exc}"]) from exc
    problems: list[str] = []
    _check(raw, Config, "", problems)
    if not problems:
        config = _resolve_paths(msgspec.convert(raw, Config), base_dir)
        problems.extend(_semantic_problems(config))
    else:
        # Still judge the meaning of every section that is well-typed, so that one run of
        # check-config shows everything there is to fix.
        problems.extend(_section_problems(raw, problems, base_dir))
    if problems:
        raise ConfigError([f"{name}: {p}" for p in problems])
    return config


def _section_problems(raw: dict[str, Any], found: list[str], base_dir: Path) -> list[str]:
    out: list[str] = []
    checks: dict[str, tuple[type[msgspec.Struct], Any]] = {
        "device": (DeviceConfig, _device_problems),
        "cloud": (CloudConfig, _url_problems),
        "metrics": (MetricsConfig, _metrics_problems),
    }
    for section, (cls, check) in checks.items():
        if section in raw and not any(_under(p, section) for p in found):
            out.extend(check(msgspec.convert(raw[section], cls)))
    sources = raw.get("sources")
    if isinstance(sources, list):
        # each well-typed source is judged; the ill-typed ones already have their problems
        typed = {
            i: _resolve_source(msgspec.convert(s, SourceConfig), base_dir)
            for i, s in enumerate(sources)
            if not any(_under(p, f"sources[{i}]") for p in found)
        }
        out.extend(_source_problems(typed))
    return out


def _under(problem: str, path: str) -> bool:
    """Whether a problem line is about `path` or something inside it."""
    return problem.startswith(path) and problem[len(path) : len(path) + 1] in (":", ".", "[")


def parse_listen(listen: str) -> ListenAddress:
    """`host:port` (IPv6 as `[::1]:port`); ValueError with a reason if it is neither."""
    match = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<p6>\d+)|(?P<host>[^:]+):(?P<port>\d+)", listen)
    if match is None:
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    host = match["v6"] or match["host"]
    port = int(match["p6"] or match["port"])
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return ListenAddress(host, port)


# -- structural check: walks the raw TOML against the struct types and collects every error ----

_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
}


def _check(value: Any, typ: Any, path: str, problems: list[str]) -> None:
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        if typ.__struct_config__.tag_field is not None:
            _check_tagged(value, (typ,), path, problems)
        else:
            _check_struct(value, typ, path, problems)
        return
    origin = typing.get_origin(typ)
    if origin is Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            allowed = ", ".join(_show(c) for c in choices)
            problems.append(f"{path}: expected one of {allowed}, got {_show(value)}")
        return
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {_show(value)}")
            return
        for i, item in enumerate(value):
            _check(item, item_type, f"{path}[{i}]", problems)
        return
    if origin is dict:
        _key_type, value_type = typing.get_args(typ)
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a table, got {_show(value)}")
            return
        for k, item in value.items():
            _check(item, value_type, f"{path}.{k}", problems)
        return
    if origin in (typing.Union, types.UnionType):
        members = tuple(t for t in typing.get_args(typ) if t is not type(None))
        if len(members) == 1:  # `X | None`: TOML has no null to give, so it is an X
            _check(value, members[0], path, problems)
            return
        if all(isinstance(t, type) and issubclass(t, msgspec.Struct) for t in members):
            _check_tagged(value, members, path, problems)
            return
    try:
        msgspec.convert(value, typ)
    except msgspec.ValidationError as exc:
        problems.append(f"{path}: {_reason(str(exc), value)}")


def _check_struct(value: Any, cls: type[msgspec.Struct], path: str, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{path or 'file'}: expected a table, got {_show(value)}")
        return
    info = msgspec.structs.fields(cls)
    known = {f.encode_name for f in info}
    tag_field = cls.__struct_config__.tag_field
    for key in value:
        if key not in known and key != tag_field:
            problems.append(f"{_join(path, key)}: unknown key")
    for f in info:
        where = _join(path, f.encode_name)
        if f.encode_name not in value:
            if f.required:
                problems.append(f"{where}: missing (required)")
            continue
        _check(value[f.encode_name], f.type, where, problems)


def _check_tagged(value: Any, classes: tuple[Any, ...], path: str, problems: list[str]) -> None:
    by_tag = {c.__struct_config__.tag: c for c in classes}
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a table, got {_show(value)}")
        return
    tag = value.get("type")
    if tag not in by_tag:
        choices = ", ".join(_show(t) for t in sorted(by_tag))
        problems.append(f"{path}.type: expected one of {choices}, got {_show(tag)}")
        return
    _check_struct(value, by_tag[tag], path, problems)


def _reason(message: str, value: Any) -> str:
    message = message.split(" - at `", 1)[0]
    match = re.fullmatch(r"Expected `([^`]+)`(.*?)(?:, got `([^`]+)`)?", message)
    if match is None:
        return message[:1].lower() + message[1:]
    words = " or ".join(_TYPE_WORDS.get(t.strip(), t.strip()) for t in match[1].split("|"))
    constraint = re.sub(r"(\d)\.0\b", r"\1", match[2])  # "> 0.0" reads better as "> 0"
    return f"expected {words}{constraint}, got {_show(value)}"


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- meaning: what types alone cannot say ----------------------------------------------------


def _semantic_problems(config: Config) -> list[str]:
    return [
        *_device_problems(config.device),
        *_url_problems(config.cloud),
        *_metrics_problems(config.metrics),
        *_source_problems(dict(enumerate(config.sources))),
    ]


def _device_problems(device: DeviceConfig) -> list[str]:
    if not device.id.isprintable() or device.id != device.id.strip():
        return ["device.id: must be printable, without leading or trailing spaces"]
    return []


def _metrics_problems(metrics: MetricsConfig) -> list[str]:
    if not metrics.listen:
        return []
    try:
        addr = parse_listen(metrics.listen)
    except ValueError as exc:
        return [f"metrics.listen: {exc}"]
    if not is_loopback(addr.host):
        return [
            f"metrics.listen: {addr.host!r} is not a loopback address; the endpoint is "
            "for a local scraper (use 127.0.0.1 and a reverse proxy to expose it)"
        ]
    return []


def _source_problems(sources: dict[int, SourceConfig]) -> list[str]:
    """Names and ports unique; each type's own checks (by index: `sources[i]`)."""
    problems: list[str] = []
    names: dict[str, int] = {}
    ports: dict[str, int] = {}
    for i, source in sources.items():
        if source.name in names:
            first = names[source.name]
            problems.append(
                f"sources[{i}].name: {source.name!r} is already used by sources[{first}]"
            )
        names.setdefault(source.name, i)
        port = getattr(source, "port", None)
        if isinstance(port, PortConfig):
            path = str(Path(port.path).resolve())  # two names for one device are one port
            if path in ports:
                problems.append(
                    f"sources[{i}].port.path: {port.path!r} is already used by "
                    f"sources[{ports[path]}] (one source per serial port)"
                )
            ports.setdefault(path, i)
        check = _SOURCE_CHECKS.get(type(source))
        if check is not None:
            problems.extend(check(source, f"sources[{i}]"))
    return problems


def _modbus_problems(source: ModbusSourceConfig, where: str) -> list[str]:
    try:
        resolve(source, where=where)  # profile paths are absolute by now (`_resolve_source`)
    except BridgeConfigError as exc:
        return list(exc.problems)
    return []


def _ascii_problems(source: AsciiSourceConfig, where: str) -> list[str]:
    try:
        spec = compile_spec(source, where=where)
    except BridgeConfigError as exc:
        return list(exc.problems)
    if source.ticket is None:
        return []
    groups = set(spec.pattern.groupindex)
    metrics = {v.metric for v in spec.values}
    return ticket_problems(source.ticket, groups, metrics, f"{where}.ticket")


def _mcu_problems(source: McuSourceConfig, where: str) -> list[str]:
    problems: list[str] = []
    for channel in source.channels:
        if not (channel.isdigit() and int(channel) <= 65535):
            problems.append(
                f"{where}.channels.{channel}: expected a channel number 0..65535 "
                f'(a key like "0"), got {_show(channel)}'
            )
    return problems


_SOURCE_CHECKS: dict[type[Any], Callable[[Any, str], list[str]]] = {
    ModbusSourceConfig: _modbus_problems,
    AsciiSourceConfig: _ascii_problems,
    McuSourceConfig: _mcu_problems,
    MqttSourceConfig: mqtt_config_problems,
    OpcuaSourceConfig: opcua_config_problems,
}


def _url_problems(cloud: CloudConfig) -> list[str]:
    try:
        parts = urlsplit(cloud.url)
        host = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        return [f"cloud.url: not a valid URL ({exc})"]
    if parts.scheme not in ("https", "http") or not host:
        return [f"cloud.url: expected an https:// URL with a host, got {cloud.url!r}"]
    if parts.username or parts.password or parts.query or parts.fragment:
        return ["cloud.url: must not carry credentials, a query or a fragment"]
    if parts.scheme == "http" and not cloud.allow_insecure_http and not is_loopback(host):
        return [
            f"cloud.url: plain http to {host!r} is refused; use https, or set "
            "cloud.allow_insecure_http = true for a trusted network"
        ]
    return []


def _resolve_paths(config: Config, base: Path) -> Config:
    device = msgspec.structs.replace(config.device, key_file=_resolve(base, config.device.key_file))
    cloud = config.cloud
    if cloud.ca_file:
        cloud = msgspec.structs.replace(cloud, ca_file=_resolve(base, cloud.ca_file))
    buffer = msgspec.structs.replace(config.buffer, path=_resolve(base, config.buffer.path))
    sources = [_resolve_source(s, base) for s in config.sources]
    return msgspec.structs.replace(
        config, device=device, cloud=cloud, buffer=buffer, sources=sources
    )


def _resolve_source(source: SourceConfig, base: Path) -> SourceConfig:
    """Serial port paths and Modbus profile files, relative to the config file."""
    port = getattr(source, "port", None)
    if isinstance(port, PortConfig):
        port = msgspec.structs.replace(port, path=_resolve(base, port.path))
        source = msgspec.structs.replace(source, port=port)
    if isinstance(source, ModbusSourceConfig):
        devices = [
            msgspec.structs.replace(d, profile=_resolve(base, d.profile))
            if d.profile and d.profile.endswith(".toml")
            else d
            for d in source.devices
        ]
        source = msgspec.structs.replace(source, devices=devices)
    if isinstance(source, MqttSourceConfig):
        source = resolve_mqtt_paths(source, base)
    if isinstance(source, OpcuaSourceConfig):
        source = resolve_opcua_paths(source, base)
    return source


def _resolve(base: Path, p: str) -> str:
    return str(base / p) if p and not Path(p).is_absolute() else p


def opcua_sources(config: Config) -> list[OpcuaSourceConfig]:
    """The config's OPC UA sources (`edgectl opcua cert` makes their client certificates)."""
    return [s for s in config.sources if isinstance(s, OpcuaSourceConfig)]
