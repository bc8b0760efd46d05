"""Key and secret files: refused like OpenSSH refuses them, written atomically with mode 0600,
and readable by the agent's own key loader (the two implementations must agree)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import keyfile as agent_keyfile
from agent.errors import KeyFileError as AgentKeyFileError
from provisioning import secretfiles
from provisioning.errors import KeyFileError, LocalError
from wire.keys import key_id


def test_written_key_is_0600_even_under_a_loose_umask_and_the_agent_loads_it(tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "keys" / "device.key"
    old = os.umask(0o000)
    try:
        secretfiles.write_private_key(path, key, replace=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["device.key"]  # no temp file left
    loaded = agent_keyfile.load_private_key(path)
    assert key_id(loaded.public_key()) == key_id(key.public_key())


def test_no_replace_refuses_an_existing_file_or_symlink(tmp_path):
    path = tmp_path / "device.key"
    secretfiles.write_private_key(path, Ed25519PrivateKey.generate(), replace=False)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        secretfiles.write_private_key(path, Ed25519PrivateKey.generate(), replace=False)
    assert path.read_bytes() == before
    dangling = tmp_path / "other.key"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(KeyFileError, match="already exists"):
        secretfiles.write_private_key(dangling, Ed25519PrivateKey.generate(), replace=False)
    assert not (tmp_path / "nowhere").exists()  # the link was not followed


def test_two_writers_one_winner(tmp_path):
    path = tmp_path / "device.key"
    errors: list[Exception] = []

    def write() -> None:
        try:
            secretfiles.write_private_key(path, Ed25519PrivateKey.generate(), replace=False)
        except LocalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 7
    secretfiles.load_private_key(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_readable_by_others_is_refused_by_both(tmp_path, mode):
    path = tmp_path / "device.key"
    secretfiles.write_private_key(path, Ed25519PrivateKey.generate(), replace=False)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as ours:
        secretfiles.load_private_key(path)
    assert f"Permissions {mode:04o} for '{path}' are too open; chmod 600 '{path}'" in str(
        ours.value
    )
    with pytest.raises(AgentKeyFileError):
        agent_keyfile.load_private_key(path)


def test_symlink_is_refused_by_both(tmp_path):
    real = tmp_path / "real.key"
    secretfiles.write_private_key(real, Ed25519PrivateKey.generate(), replace=False)
    link = tmp_path / "device.key"
    link.symlink_to(real)
    with pytest.raises(KeyFileError, match="is a symlink; refusing to follow it"):
        secretfiles.load_private_key(link)
    with pytest.raises(AgentKeyFileError):
        agent_keyfile.load_private_key(link)


def test_group_writable_directory_is_refused(tmp_path):
    directory = tmp_path / "keys"
    path = directory / "device.key"
    secretfiles.write_private_key(path, Ed25519PrivateKey.generate(), replace=False)
    directory.chmod(0o770)
    with pytest.raises(KeyFileError, match=f"chmod 700 '{directory}'"):
        secretfiles.load_private_key(path)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"not a key", "not an Ed25519 private key"),
        (None, "does not exist"),
        (b"x" * 70_000, "larger than 65536 bytes"),
    ],
)
def test_not_a_key(tmp_path, content, why):
    path = tmp_path / "device.key"
    if content is not None:
        secretfiles.write_secret_file(path, content, replace=False)
    with pytest.raises(KeyFileError, match=why):
        secretfiles.load_private_key(path)


def test_a_fifo_does_not_hang(tmp_path):
    path = tmp_path / "device.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        secretfiles.load_private_key(path)


def test_replace_is_atomic_and_keeps_0600(tmp_path):
    path: Path = tmp_path / "agent.toml"
    secretfiles.write_secret_file(path, b"one", replace=False)
    secretfiles.write_secret_file(path, b"two", replace=True)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
