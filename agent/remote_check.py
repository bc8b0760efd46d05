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
from pathlib import Path

from agent.config import parse_config
from agent.errors import ConfigError

NAME = "config"


def compose(pushed: str, local: str) -> str:
    """The text the gateway runs: the pushed sections, then its own [device], [cloud], [buffer].
    Local tables come last so that no key of the pushed text can fall into them."""
    return pushed.rstrip("\n") + "\n\n" + local


def stand_in(device_id: str, cloud_url: str) -> str:
    return (
        f'[device]\nid = {json.dumps(device_id)}\nkey_file = "device.key"\n\n'
        f"[cloud]\nurl = {json.dumps(cloud_url)}\n\n"
        '[buffer]\npath = "buffer.db"\n'
    )


def problems(pushed: str, device_id: str, cloud_url: str) -> list[str]:
    """Every problem the agent's checker finds in `pushed` as the gateway would run it."""
    try:
        parse_config(compose(pushed, stand_in(device_id, cloud_url)), name=NAME, base_dir=Path("/"))
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
