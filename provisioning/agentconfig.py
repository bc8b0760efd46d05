"""The agent's `agent.toml` as edgectl writes it and reads it back.

Writing: a starting file with the keys edgectl knows (`[device] id, key_file`, `[cloud] url,
ca_file, allow_insecure_http`, `[buffer] path`, `[clock] sync_check`) that `edge-agent
check-config` accepts (tested).

Reading: with the agent's own parser and validator (`agent.config.parse_config`, the one
module of the agent's besides its key file and errors that edgectl may import), so edgectl and
the agent can never disagree about a file: what the agent would refuse, edgectl refuses too,
with the same `FILE: key.path: reason` lines. Relative paths come back resolved against the
file. edgectl's own words stay for a file that is missing or unreadable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config, parse_config
from agent.errors import ConfigError
from provisioning.errors import LocalError

# The gateway's one directory: `--dir`'s default for every gateway command, the directory of
# the agent's own default `--config` (agent.cli.DEFAULT_CONFIG; a test keeps the two equal).
GATEWAY_DIR = Path("/var/lib/edge-agent")
CONFIG_NAME = "agent.toml"
KEY_NAME = "device.key"
CA_NAME = "ca.pem"
# The cloud's config-signing public key (base64url), pinned at enrolment beside the device key:
# the agent applies only configs signed by it (wire.remoteconfig).
CONFIG_KEY_NAME = "cloud-config.pub"
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
    """What edgectl needs from an agent.toml, and the whole validated file (`agent`); paths
    resolved against the file."""

    path: Path
    device_id: str
    key_file: Path
    cloud_url: str
    ca_file: str | None
    allow_insecure_http: bool
    sync_check: str
    timesyncd_flag_file: str
    buffer_path: Path
    agent: Config


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
    """Parse and validate `path` as the agent does; LocalError naming the file and every key
    that is wrong (one line, problems separated by "; ")."""
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
        config = parse_config(text, name=str(path), base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise LocalError("; ".join(exc.problems)) from exc
    return GatewayConfig(
        path=path,
        device_id=config.device.id,
        key_file=Path(config.device.key_file),
        cloud_url=config.cloud.url,
        ca_file=config.cloud.ca_file,
        allow_insecure_http=config.cloud.allow_insecure_http,
        sync_check=config.clock.sync_check,
        timesyncd_flag_file=config.clock.timesyncd_flag_file,
        buffer_path=Path(config.buffer.path),
        agent=config,
    )
