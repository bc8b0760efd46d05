"""The agent's config checker for a config pushed from the cloud, as a child process.

`python -m agent.remote_check` reads one JSON object on stdin, `{"device_id", "cloud_url",
"config"}`, and writes `{"problems": [...]}` on stdout (an empty list: the config is good), exit
status 0; anything else on stdin is exit status 2 with one line on stderr.

The receiver runs this (cloud/receiver/configpush.py) so that a push is refused with exactly
the error list `edge-agent check-config` prints, without the cloud importing the agent: the two
meet only in `wire/` (docs/architecture.md, "Remote configuration: the agent's own checker").

What is checked is what the gateway will run (`compose`): the pushed text followed by the
gateway's own `[device]`, `[cloud]` and `[buffer]` sections, which never travel
(`wire.remoteconfig`); here a stand-in for them: the target device's id, the receiver's URL.
Problems are named `config: <key>: <reason>`. No file is read or written: the paths in the
config are the gateway's, and only their syntax can be judged here.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from agent.config import parse_config
from agent.errors import ConfigError
from agent.remote import compose

NAME = "config"


def stand_in(device_id: str, cloud_url: str) -> str:
    return (
        f'[device]\nid = {json.dumps(device_id)}\nkey_file = "device.key"\n\n'
        f"[cloud]\nurl = {json.dumps(cloud_url)}\n\n"
        '[buffer]\npath = "buffer.db"\n'
    )


def problems(pushed: str, device_id: str, cloud_url: str) -> list[str]:
    """Every problem the agent's checker finds in `pushed` as the gateway would run it."""
    # Relative paths resolve into an empty directory: the receiver's own files are never read
    # for a gateway's (a Modbus profile named by its file is on the gateway, not here).
    with tempfile.TemporaryDirectory(prefix="remote-check-") as empty:
        text = compose(pushed, stand_in(device_id, cloud_url))
        try:
            parse_config(text, name=NAME, base_dir=Path(empty))
        except ConfigError as exc:
            return list(exc.problems)
    return []


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        found = problems(
            str(request["config"]), str(request["device_id"]), str(request["cloud_url"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        print(f"remote_check: bad request: {type(exc).__name__}", file=sys.stderr)
        return 2
    json.dump({"problems": found}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
