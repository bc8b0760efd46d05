"""What edgectl reads from the person and the environment: durations, the admin token, the
enrolment token, a user name. Secrets are never echoed back in messages."""

from __future__ import annotations

import getpass
import os
import pwd
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from provisioning import secretfiles
from provisioning.enroll import clean_token
from provisioning.errors import LocalError
from provisioning.secretfiles import MAX_TOKEN_FILE_BYTES

_DURATION = re.compile(r"([0-9]+)\s*(s|m|min|h|d)?")
_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds from `90s`, `30m`, `24h`, `7d` or a bare number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) <= 0:
        raise LocalError(f"duration {text!r}: expected e.g. 90s, 30m, 24h or 7d")
    return int(match[1]) * _UNITS[match[2] or ""]


def admin_token(path: str | None, env: Mapping[str, str]) -> str:
    """From --admin-token-file, TIERLESS_ADMIN_TOKEN_FILE or TIERLESS_ADMIN_TOKEN."""
    path = path or env.get("TIERLESS_ADMIN_TOKEN_FILE")
    if path:
        raw = secretfiles.read_private_file(
            path, what="admin token file", max_bytes=MAX_TOKEN_FILE_BYTES
        )
        try:
            token = raw.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise LocalError(f"admin token file '{path}' is not ASCII text") from exc
        where = f"admin token file '{path}'"
    else:
        token = env.get("TIERLESS_ADMIN_TOKEN", "").strip()
        where = "TIERLESS_ADMIN_TOKEN"
        if not token:
            raise LocalError(
                "no admin token: pass --admin-token-file FILE (mode 0600), or set "
                "TIERLESS_ADMIN_TOKEN_FILE or TIERLESS_ADMIN_TOKEN"
            )
    if not token or not token.isprintable() or " " in token:
        raise LocalError(f"{where} does not hold a token (one line, no spaces)")
    return token


def enrolment_token(
    value: str | None, token_file: str | None, stdin: TextIO, say: Callable[[str], None]
) -> str:
    """From `--token` (with a warning), `--token-file` (`-`: stdin), or stdin (a hidden prompt
    on a terminal); surrounding whitespace removed."""
    if value is not None:
        say(
            "warning: --token shows the token to every user of this machine (ps) and keeps "
            "it in shell history; use --token-file or standard input next time"
        )
        return clean_token(value)
    if token_file and token_file != "-":  # noqa: S105 - "-" means stdin
        path = Path(token_file)
        try:
            st = path.stat()
            with path.open("rb") as f:
                data = f.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as exc:
            raise LocalError(f"cannot read token file '{path}': {exc.strerror}") from exc
        if stat.S_IMODE(st.st_mode) & 0o077:
            say(f"warning: token file '{path}' is readable by others; delete it once enrolled")
        if len(data) > MAX_TOKEN_FILE_BYTES:
            raise LocalError(f"token file '{path}' is too large to hold a token")
        return clean_token(data.decode("ascii", errors="replace"))
    if stdin.isatty():
        return clean_token(getpass.getpass("enrolment token (input hidden): "))
    return clean_token(stdin.read(MAX_TOKEN_FILE_BYTES))


def owner(name: str | None) -> tuple[int, int] | None:
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise LocalError(f"--owner: no user {name!r} on this machine") from exc
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise LocalError("--owner needs root (or name yourself)")
    return entry.pw_uid, entry.pw_gid
