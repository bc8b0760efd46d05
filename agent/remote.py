"""Remote configuration on the gateway: the files, and what the agent runs at start.

Files beside `agent.toml` (the config directory):

    cloud-config.pub          the cloud's config-signing key, pinned at enrolment (`edgectl enroll`)
    pushed-config.json        the signed config in force (`wire.remoteconfig.SignedConfig`, as
                              fetched: signature, device, version, sha256, body)
    pushed-config.good.json   the one in force before it: what a rollback restores (absent
                              when that was agent.toml alone)
    pushed-config.pending     an apply inside its health window; a start that finds it rolls
                              the apply back (`_finish_interrupted`)
    pushed-config.failed      the newest version refused or rolled back here: not tried again,
                              across restarts too, until a newer one is pushed

What runs (`load_running`): without a pushed config, `agent.toml` as it is (config version: the
first 16 hex digits of its SHA-256). With one, the pushed sections followed by the `[device]`,
`[cloud]` and `[buffer]` sections of `agent.toml` (`compose`; those three never travel,
`wire.remoteconfig.LOCAL_SECTIONS`), config version `v<version>`. The pushed file is verified
again at every start (pinned key, this device, its digest): a file that fails is not run; the
agent falls back to the last good one, else to `agent.toml` alone, and says so in its log.

Invariants:
- a file is replaced only by `write_atomic` (tmp, fsync, rename, fsync of the directory), so a
  kill -9 at any moment leaves the old or the new file whole, never a mix;
- the version in force only grows, except by a rollback, which restores the previous file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config import Config, load_config, parse_config
from agent.errors import ConfigError
from agent.health import config_version as file_version
from wire.errors import RemoteConfigError, SignatureError
from wire.keys import b64url_decode, public_key_from_raw
from wire.remoteconfig import LOCAL_SECTIONS, SignedConfig, verify_config

log = logging.getLogger(__name__)

PINNED_NAME = "cloud-config.pub"
PUSHED_NAME = "pushed-config.json"
GOOD_NAME = "pushed-config.good.json"
PENDING_NAME = "pushed-config.pending"  # an apply whose health window has not passed yet
FAILED_NAME = "pushed-config.failed"  # the newest version refused or rolled back here


@dataclass(frozen=True, slots=True)
class Running:
    """What the agent runs and where it came from."""

    config: Config
    version: str  # the config version batches and health reports name
    directory: Path
    local: str  # the gateway's own [device], [cloud], [buffer], as TOML
    key: Ed25519PublicKey | None  # the pinned key; None: remote configuration is off
    signed: SignedConfig | None = None  # the pushed config in force
    note: str | None = None  # what start-up found about the last apply (an interrupted one)
    failed: int = 0  # the newest version that failed here (FAILED_NAME)

    @property
    def pushed_version(self) -> int:
        return 0 if self.signed is None else self.signed.version


def compose(pushed: str, local: str) -> str:
    """The text the gateway runs: the pushed sections, then its own [device], [cloud],
    [buffer]. Local tables come last so that no key of the pushed text can fall into them."""
    return pushed.rstrip("\n") + "\n\n" + local


def local_sections(text: str, name: str) -> str:
    """The gateway-local sections of `agent.toml` as TOML (they hold only plain values)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{name}: not valid TOML: {exc}"]) from exc
    out = []
    for section in LOCAL_SECTIONS:
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        out.append(f"[{section}]")
        for key, value in table.items():
            if isinstance(value, bool):
                out.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int | float | str):
                out.append(f"{key} = {json.dumps(value)}")
            else:
                raise ConfigError([f"{name}: {section}.{key}: expected a plain value"])
        out.append("")
    return "\n".join(out)


def pinned_key(directory: Path) -> Ed25519PublicKey | None:
    path = directory / PINNED_NAME
    try:
        return public_key_from_raw(b64url_decode(path.read_text(encoding="ascii").strip()))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, SignatureError) as exc:
        raise ConfigError([f"{path}: not the cloud's config-signing key: {exc}"]) from exc


def read_signed(path: Path) -> SignedConfig | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=SignedConfig)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        raise RemoteConfigError(f"{path.name}: unreadable ({type(exc).__name__})") from exc


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: the old file or the new one survives a crash, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_durably(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def pushed_config(running: Running, signed: SignedConfig) -> Config:
    """The config `signed` makes with this gateway's own sections; ConfigError if the agent's
    checker refuses it."""
    name = f"pushed config v{signed.version}"
    return parse_config(compose(signed.body, running.local), name=name, base_dir=running.directory)


def load_running(path: Path) -> Running:
    """What to run at start (module docstring); ConfigError when even `agent.toml` alone fails."""
    config = load_config(path)
    data = path.read_bytes()
    directory = path.resolve().parent
    key = pinned_key(directory)
    plain = Running(config, file_version(data), directory, "", key)
    if key is None:
        return plain
    local = local_sections(data.decode("utf-8"), str(path))
    note = _finish_interrupted(directory)
    failed = read_failed(directory)
    plain = Running(config, file_version(data), directory, local, key, note=note, failed=failed)
    for name in (PUSHED_NAME, GOOD_NAME):
        try:
            signed = read_signed(directory / name)
            if signed is None:
                continue
            verify_config(key, signed, device_id=config.device.id, newer_than=0)
            pushed = pushed_config(plain, signed)
        except (RemoteConfigError, ConfigError) as exc:
            log.error("%s is not run: %s", name, exc)
            continue
        return Running(pushed, f"v{signed.version}", directory, local, key, signed, note, failed)
    return plain


def read_failed(directory: Path) -> int:
    try:
        return int((directory / FAILED_NAME).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return 0  # none, or unreadable: at worst a failed version is tried once more


def _finish_interrupted(directory: Path) -> str | None:
    """An apply stopped inside its health window (a power cut, kill -9) never proved itself: put
    the config from before it back (the good file, else agent.toml alone), as a rollback would.
    The cloud still wants the new version, so the next acknowledgement tries it again."""
    pending = directory / PENDING_NAME
    if not pending.exists():
        return None
    try:
        good = (directory / GOOD_NAME).read_bytes()
    except FileNotFoundError:
        remove_durably(directory / PUSHED_NAME)
    else:
        write_atomic(directory / PUSHED_NAME, good)
    remove_durably(pending)
    log.warning("a config apply was interrupted inside its health window: rolled back")
    return "rolled back: interrupted inside the health window"
