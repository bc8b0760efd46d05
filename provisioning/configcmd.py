"""`edgectl config push|status`: remote configuration from the operator's side (docs/fleet.md).

`push FILE --device ID | --tag NAME=VALUE` sends an agent config (the sections a push may hold:
`wire.remoteconfig`) to one gateway or to every gateway with a series tagged so; the receiver
checks it with the agent's own checker and either stores it signed, as each target's next
version, or refuses it with every problem (exit 14). `status` lists each gateway's desired
(pushed) config beside the one it runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from provisioning.client import AdminApi
from provisioning.errors import LocalError
from wire.remoteconfig import MAX_CONFIG_BYTES, ConfigPush, ConfigPushed, ConfigState


def read_config(path: str) -> str:
    """The config file's text; LocalError naming the file when it cannot be pushed as is."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LocalError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise LocalError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LocalError(f"{path}: not UTF-8 text") from exc


def push(admin: AdminApi, path: str, *, device: str | None, tag: str | None) -> ConfigPushed:
    if (device is None) == (tag is None):
        raise LocalError("name exactly one target: --device ID or --tag NAME=VALUE")
    return admin.push_config(ConfigPush(config=read_config(path), device=device, tag=tag))


def pushed_lines(pushed: ConfigPushed) -> list[str]:
    lines = [f"config {pushed.sha256[:16]} pushed to {len(pushed.targets)} gateway(s):"]
    lines += [f"  {t.device_id}: version {t.version}" for t in pushed.targets]
    return lines


def status_table(states: list[ConfigState]) -> str:
    """One line per gateway: desired version and digest, when pushed, what it runs."""
    rows = [("DEVICE", "DESIRED", "SHA256", "PUSHED", "RUNNING", "LAST RESULT")]
    for s in states:
        pushed = "-"
        if s.pushed_ms is not None:
            pushed = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(s.pushed_ms / 1000))
        rows.append(
            (
                s.device_id,
                "-" if s.desired_version is None else f"v{s.desired_version}",
                (s.desired_sha256 or "-")[:16],
                pushed,
                s.running or "-",
                s.last_result or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def status_json(states: list[ConfigState]) -> str:
    return msgspec.json.format(msgspec.json.encode({"devices": states}), indent=2).decode()
