"""The MQTT source's configuration: the `type = "mqtt"` table, its checks and its secrets.

Kept apart from `agent.sources.mqtt.source` so that validating a config file needs neither
aiomqtt nor a running loop. `agent.config` puts `MqttSourceConfig` in its `SourceConfig` union,
calls `mqtt_config_problems` for what types cannot say (URL, TLS keys, every rule compiled
against the presets) and `resolve_mqtt_paths` to make file paths relative to the config file.

Secrets: the broker password lives in `password_file` (and a client key in `key_file`), each
refused unless it is a regular file owned by the agent's user with no group or other
permission bits (`read_secret_file`, the same rule as the device key). Neither the password
nor the file's content is ever logged or put in an error message.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from agent.errors import ConfigError
from agent.sources.mqtt.mapping import MqttRule, RuleError, compile_rule
from agent.sources.mqtt.presets import PRESETS
from hostio.errors import SecretFileError
from hostio.secretfiles import read_secret_text

_MAX_SECRET_BYTES = 4096


class MqttSourceConfig(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag="mqtt",
    tag_field="type",
):
    """Messages from an MQTT broker (usually Mosquitto on the gateway) mapped to readings."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "mqtt"
    url: str = "mqtt://127.0.0.1:1883"  # mqtt:// or mqtts:// (TLS), no credentials
    client_id: Annotated[str, msgspec.Meta(max_length=128)] = ""  # "": tierless-<host>-<name>
    protocol: Literal["5", "3.1.1"] = "5"
    username: Annotated[str, msgspec.Meta(max_length=256)] = ""
    password_file: str = ""  # mode 0600, owned by the agent's user; first line is the password
    ca_file: str = ""  # mqtts: CA bundle ("" = the system's)
    cert_file: str = ""  # mqtts: client certificate, for brokers that require one
    key_file: str = ""  # its private key, mode 0600
    keepalive_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    session_expiry_s: Annotated[int, msgspec.Meta(ge=60, le=0xFFFFFFFF)] = 7 * 86400
    receive_maximum: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1000
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    reconnect_initial_ms: Annotated[int, msgspec.Meta(ge=1)] = 500
    reconnect_max_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    retained: Literal["ignore", "accept"] = "ignore"
    dedupe: Literal["packet_id", "off"] = "packet_id"
    max_payload_bytes: Annotated[int, msgspec.Meta(ge=16, le=16 * 1024 * 1024)] = 65536
    max_readings_per_message: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    max_series: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000
    # Mosquitto's count of messages it dropped at its queue limits ("" to not watch it).
    broker_drops_topic: str = "$SYS/broker/publish/messages/dropped"
    rules: list[MqttRule]  # at least one (checked in mqtt_config_problems)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://host[:port]` or `mqtts://host[:port]`; ValueError with the reason otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from exc
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials: use username and password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must not have a path, query or fragment")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


def mqtt_config_problems(config: MqttSourceConfig, where: str) -> list[str]:
    """What the types cannot say, one line per problem, each starting with `where` (the key
    path of this source, e.g. `sources[2]`)."""
    problems: list[str] = []
    try:
        address = parse_broker_url(config.url)
    except ValueError as exc:
        problems.append(f"{where}.url: {exc}")
    else:
        tls_keys = [k for k in ("ca_file", "cert_file", "key_file") if getattr(config, k)]
        if tls_keys and not address.tls:
            problems.append(f"{where}.{tls_keys[0]}: only used with an mqtts:// url")
    if bool(config.cert_file) != bool(config.key_file):
        problems.append(f"{where}.cert_file: cert_file and key_file go together")
    if config.password_file and not config.username:
        problems.append(f"{where}.password_file: needs a username")
    if config.client_id and not _printable_ascii(config.client_id):
        problems.append(f"{where}.client_id: printable ASCII without spaces, please")
    if config.reconnect_initial_ms / 1000 > config.reconnect_max_s:
        problems.append(
            f"{where}.reconnect_initial_ms: {config.reconnect_initial_ms} ms is more than "
            f"reconnect_max_s ({config.reconnect_max_s:g} s)"
        )
    if not config.rules:
        problems.append(f"{where}.rules: at least one rule (or preset) is needed")
    for i, rule in enumerate(config.rules):
        try:
            compile_rule(rule, PRESETS)
        except RuleError as exc:
            problems.extend(f"{where}.rules[{i}].{problem}" for problem in exc.problems)
    return problems


def resolve_mqtt_paths(config: MqttSourceConfig, base: Path) -> MqttSourceConfig:
    """The config with its file paths made absolute against the config file's directory."""
    changes = {
        k: str(base / v)
        for k in ("password_file", "ca_file", "cert_file", "key_file")
        if (v := getattr(config, k)) and not Path(v).is_absolute()
    }
    return msgspec.structs.replace(config, **changes) if changes else config


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable() and " " not in text


def default_client_id(name: str) -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    return f"tierless-{host}-{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}"


def read_secret_file(path: str, what: str) -> str:
    """The first line of a secret file that only its owner (this user) can read (the rule of
    `hostio.secretfiles`), else ConfigError. Never logged."""
    try:
        text = read_secret_text(path, what=what, max_bytes=_MAX_SECRET_BYTES)
    except SecretFileError as exc:
        raise ConfigError([str(exc)]) from exc
    lines = text.splitlines()
    return lines[0] if lines else ""
