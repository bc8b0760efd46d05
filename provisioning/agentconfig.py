"""The agent's `agent.toml` as edgectl writes it and reads it back.

edgectl may not import `agent` (layering), so this module knows only the few keys it needs and
writes a file that `edge-agent check-config` accepts (tested): `[device] id, key_file`,
`[cloud] url, ca_file, allow_insecure_http`, `[buffer] path`, `[clock] sync_check`. Reading is
lenient about everything else (the agent validates the whole file); it is strict only about the
keys edgectl itself uses, and says which file and key is wrong. Relative paths are relative to
the file, as for the agent.
"""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioning.errors import LocalError

CONFIG_NAME = "agent.toml"
KEY_NAME = "device.key"
CA_NAME = "ca.pem"
BUFFER_NAME = "buffer.db"
TAG_NAMES = ("site", "area", "process")


@dataclass(frozen=True, slots=True)
class Tags:
    site: str = ""
    area: str = ""
    process: str = ""

    def items(self) -> list[tuple[str, str]]:
        return [(n, getattr(self, n)) for n in TAG_NAMES if getattr(self, n)]


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What edgectl needs from an agent.toml; paths resolved."""

    path: Path
    device_id: str
    key_file: Path
    cloud_url: str
    ca_file: str | None
    allow_insecure_http: bool
    sync_check: str
    timesyncd_flag_file: str
    raw: dict[str, Any] = field(repr=False)


def toml_str(value: str) -> str:
    """A TOML basic string: JSON's escapes are a subset of TOML's."""
    return json.dumps(value, ensure_ascii=True)


def render(
    *,
    device_id: str,
    cloud_url: str,
    ca_file: str | None,
    key_file: str = KEY_NAME,
    buffer_path: str = BUFFER_NAME,
    allow_insecure_http: bool = False,
    tags: Tags | None = None,
    written_by: str = "edgectl",
) -> str:
    """A starting agent.toml: identity, receiver, buffer; sources left for the installer."""
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        f"# edge-agent configuration for gateway {toml_str(device_id)}, written by {written_by}"
        f" on {stamp}.",
        "# Every key: docs/configuration.md. Check it with: edge-agent check-config <this file>",
        "# Relative paths are relative to this file.",
        "",
        "[device]",
        f"id = {toml_str(device_id)}",
        "# Ed25519 private key made on this gateway at enrolment: mode 0600, never copied off it.",
        f"key_file = {toml_str(key_file)}",
        "",
        "[cloud]",
        f"url = {toml_str(cloud_url)}",
    ]
    if ca_file:
        lines.append(f"ca_file = {toml_str(ca_file)}")
    if allow_insecure_http:
        lines.append("allow_insecure_http = true")
    lines += [
        "",
        "[buffer]",
        f"path = {toml_str(buffer_path)}",
        "",
        "[clock]",
        'sync_check = "auto"',
        "",
    ]
    lines += _sources_template(tags or Tags())
    return "\n".join(lines) + "\n"


def _sources_template(tags: Tags) -> list[str]:
    tag_lines = [f"# {name} = {toml_str(value)}" for name, value in tags.items()]
    out = [
        "# Sources: this gateway's meters and sensors (docs/serial.md, docs/configuration.md).",
    ]
    if tag_lines:
        out.append("# Where this gateway is (from the fleet plan): give every source these tags.")
    out += [
        "#",
        "# [[sources]]",
        '# type = "modbus"',
        '# name = "main-bus"',
        '# port = { path = "/dev/serial/by-id/usb-…", baudrate = 9600 }',
        "# [[sources.devices]]",
        '# name = "incomer"',
        "# unit_id = 1",
        '# profile = "eastron-sdm630"',
        *tag_lines,
    ]
    return out


def read(path: Path) -> GatewayConfig:
    """Parse `path`; LocalError naming the file and key for anything edgectl needs and lacks."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise LocalError(
            f"{path}: no agent configuration here (enrol first: edgectl enroll)"
        ) from exc
    except OSError as exc:
        raise LocalError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise LocalError(f"{path}: not UTF-8 text") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LocalError(f"{path}: not valid TOML: {exc}") from exc
    base = path.resolve().parent

    def get(section: str, key: str, kind: type, default: Any = None) -> Any:
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise LocalError(f"{path}: {section}: expected a table")
        value = table.get(key, default)
        if value is None and default is None:
            raise LocalError(f"{path}: {section}.{key}: missing (required)")
        if not isinstance(value, kind):
            raise LocalError(f"{path}: {section}.{key}: expected a {kind.__name__}")
        return value

    def resolve(p: str) -> str:
        return str(base / p) if not Path(p).is_absolute() else p

    ca_file = raw.get("cloud", {}).get("ca_file") if isinstance(raw.get("cloud"), dict) else None
    if ca_file is not None and not isinstance(ca_file, str):
        raise LocalError(f"{path}: cloud.ca_file: expected a str")
    return GatewayConfig(
        path=path,
        device_id=get("device", "id", str),
        key_file=Path(resolve(get("device", "key_file", str))),
        cloud_url=get("cloud", "url", str),
        ca_file=resolve(ca_file) if ca_file else None,
        allow_insecure_http=get("cloud", "allow_insecure_http", bool, False),
        sync_check=get("clock", "sync_check", str, "auto"),
        timesyncd_flag_file=get(
            "clock", "timesyncd_flag_file", str, "/run/systemd/timesync/synchronized"
        ),
        raw=raw,
    )
