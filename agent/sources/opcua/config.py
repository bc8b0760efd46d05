"""The OPC UA source's configuration: the `type = "opcua"` table, its checks and its secrets.

Kept apart from `agent.sources.opcua.source` so that validating a config file loads no asyncua
(about half a second of start time on a Pi that has no OPC UA server to read). `agent.config`
puts `OpcuaSourceConfig` in its `SourceConfig` union, calls `opcua_config_problems` for what
types cannot say and `resolve_opcua_paths` to make file paths relative to the config file.

Rules kept here:
- security `None` only to a loopback host, unless `insecure = "allow"` says so;
- with security on, `cert_file` and `key_file` name the client certificate (made on first start
  when both are missing, the key mode 0600 like the device key), and the server's certificate
  must be one of `trusted_server_certs` (a pin is a list of one);
- every node has exactly one of `node_id` and `browse_path`, and no two nodes feed one series;
- the password lives in `password_file` (the OpenSSH-style rule of `hostio.secretfiles`), never
  in the config file, a log line or an error message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from hostio.loopback import is_loopback

_Tag = Annotated[str, msgspec.Meta(max_length=128)]
# ns=<index>;<i|s|g|b>=<identifier>, or i=<n> in namespace 0
_NODE_ID = re.compile(r"^(ns=\d+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=\S+)$")
# one browse step: <namespace index>:<browse name>, e.g. 2:Line1
_STEP = re.compile(r"^\d+:[^/]+$")

SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep"]


class OpcuaNode(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One variable read into one series."""

    node_id: str = ""  # ns=2;s=Line1.Flow
    browse_path: str = ""  # from the Objects folder: 2:Plant/2:Line1/2:Flow
    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    unit: _Tag = ""  # "": the node's EngineeringUnits (EUInformation) when it has one
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""
    sampling_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] | None = None
    deadband_abs: Annotated[float, msgspec.Meta(ge=0)] | None = None
    queue_size: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None

    def where(self) -> str:
        """How messages name this node: its node id or browse path."""
        return self.node_id or self.browse_path


class OpcuaSourceConfig(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag="opcua",
    tag_field="type",
):
    """Variables of an OPC UA server (a PLC, a SCADA server), by subscription or by polling."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "opcua"
    url: str = "opc.tcp://127.0.0.1:4840"
    security_policy: SecurityPolicy = "None"
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    insecure: Literal["loopback_only", "allow"] = "loopback_only"  # security None elsewhere
    cert_file: str = ""  # the client certificate (DER or PEM); made on first start if missing
    key_file: str = ""  # its private key (PEM), mode 0600
    trusted_server_certs: list[str] = msgspec.field(default_factory=list)  # DER or PEM files
    application_uri: str = ""  # "": urn:tierless:<host>:<name>, written into a new certificate
    username: Annotated[str, msgspec.Meta(max_length=256)] = ""
    password_file: str = ""  # mode 0600, owned by the agent's user; first line is the password
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=3_600_000)] = 1000
    sampling_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 100
    queue_size: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 10
    deadband_abs: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    poll_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=3_600_000)] = 1000
    timestamps: Literal["source", "agent"] = "source"
    max_source_skew_ms: Annotated[int, msgspec.Meta(ge=0)] = 60_000
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    # how often the server state is read to notice a dead link, and how long that read may take
    watchdog_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    reconnect_initial_ms: Annotated[int, msgspec.Meta(ge=1)] = 500
    reconnect_max_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    resolve_retry_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # nodes missing on the server
    # requested session timeout: how long the server keeps the session (and its subscription's
    # queued values) for a link that dropped; mode subscribe recovers it within that time
    session_timeout_ms: Annotated[int, msgspec.Meta(ge=1000, le=86_400_000)] = 60_000
    # after a lost link (mode subscribe): the same session on a new connection, or a new one
    on_link_lost: Literal["recover_session", "new_session"] = "recover_session"
    max_queued_notifications: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100_000
    # tags for every node that does not set its own
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""
    nodes: list[OpcuaNode]


def opcua_config_problems(config: OpcuaSourceConfig, where: str) -> list[str]:
    """What the types cannot say, one line per problem, each starting with `where` (the key
    path of this source, e.g. `sources[2]`)."""
    problems: list[str] = []
    host = _url_host(config.url, f"{where}.url", problems)
    secure = config.security_policy != "None"
    if (
        host is not None
        and not secure
        and config.insecure != "allow"
        and not is_loopback(host.strip("[]"))
    ):
        problems.append(
            f"{where}.security_policy: None to {host!r} is refused; use Basic256Sha256 or "
            'Aes128_Sha256_RsaOaep, or set insecure = "allow" for a trusted network'
        )
    if secure:
        for key in ("cert_file", "key_file"):
            if not getattr(config, key):
                problems.append(
                    f"{where}.{key}: needed with security_policy {config.security_policy}"
                )
        if not config.trusted_server_certs:
            problems.append(
                f"{where}.trusted_server_certs: name the server's certificate (or the few it "
                "may present): a secure channel to an unchecked server is not secure"
            )
    else:
        for key in ("cert_file", "key_file"):
            if getattr(config, key):
                problems.append(
                    f'{where}.{key}: only used with a security_policy other than "None"'
                )
    if config.password_file and not config.username:
        problems.append(f"{where}.password_file: needs a username")
    if config.username and not secure:
        problems.append(
            f"{where}.username: a password over security None travels in clear; "
            "use a security_policy"
        )
    if config.reconnect_initial_ms / 1000 > config.reconnect_max_s:
        problems.append(
            f"{where}.reconnect_initial_ms: {config.reconnect_initial_ms} ms is more than "
            f"reconnect_max_s ({config.reconnect_max_s:g} s)"
        )
    if not config.nodes:
        problems.append(f"{where}.nodes: at least one node is needed")
    seen: dict[tuple[str, ...], int] = {}
    for i, node in enumerate(config.nodes):
        at = f"{where}.nodes[{i}]"
        if bool(node.node_id) == bool(node.browse_path):
            problems.append(f"{at}: exactly one of node_id and browse_path")
        elif node.node_id and not _NODE_ID.match(node.node_id):
            problems.append(
                f"{at}.node_id: expected ns=<index>;s=<name> (or i=, g=, b=), got {node.node_id!r}"
            )
        elif node.browse_path and not all(_STEP.match(s) for s in node.browse_path.split("/")):
            problems.append(
                f"{at}.browse_path: expected steps like 2:Plant/2:Line1/2:Flow "
                f"(namespace index:browse name), got {node.browse_path!r}"
            )
        series = (node.metric, node.unit, *tags(config, node))
        if series in seen:
            problems.append(f"{at}.metric: same series as nodes[{seen[series]}]")
        seen.setdefault(series, i)
    return problems


def tags(config: OpcuaSourceConfig, node: OpcuaNode) -> tuple[str, str, str, str]:
    """The node's site, area, process and medium: its own, else the source's."""
    return (
        node.site or config.site,
        node.area or config.area,
        node.process or config.process,
        node.medium or config.medium,
    )


def _url_host(url: str, at: str, problems: list[str]) -> str | None:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        problems.append(f"{at}: not a valid URL ({exc})")
        return None
    if parts.scheme != "opc.tcp" or not parts.hostname:
        problems.append(f"{at}: expected opc.tcp://HOST[:PORT][/PATH], got {url!r}")
        return None
    if parts.username or parts.password:
        problems.append(f"{at}: must not carry credentials: use username and password_file")
        return None
    return parts.hostname


def resolve_opcua_paths(config: OpcuaSourceConfig, base: Path) -> OpcuaSourceConfig:
    """The config with its file paths made absolute against the config file's directory."""

    def absolute(p: str) -> str:
        return str(base / p) if p and not Path(p).is_absolute() else p

    return msgspec.structs.replace(
        config,
        cert_file=absolute(config.cert_file),
        key_file=absolute(config.key_file),
        password_file=absolute(config.password_file),
        trusted_server_certs=[absolute(p) for p in config.trusted_server_certs],
    )
