"""Operator token files: the receiver reads them by the secret-file rule and creates them once."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from cloud.errors import ConfigError
from cloud.receiver.tokenfiles import load_or_create, read_token_file

TOKEN = "t" * 32


def test_a_fifo_at_the_token_path_does_not_hang_the_receiver(tmp_path: Path) -> None:
    # The old reader opened without O_NONBLOCK: with no writer, open(2) on a FIFO waits for ever
    # and the receiver never started. The thread is released below if that comes back.
    fifo = tmp_path / "admin.token"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_token_file(fifo)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, name="token-reader")
    reader.start()
    reader.join(timeout=5)
    hung = reader.is_alive()
    if hung:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert not hung, "reading a FIFO token path blocked"
    assert isinstance(outcome[0], ConfigError)
    assert f"token file '{fifo}' is not a regular file" in str(outcome[0])


def test_read_strips_and_checks_the_token(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text(f"  {TOKEN}\n")
    path.chmod(0o600)
    assert read_token_file(path) == TOKEN
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16 printable characters"):
        read_token_file(path)
    path.write_bytes(b"\xff" * 20)
    with pytest.raises(ConfigError, match="is not ASCII text"):
        read_token_file(path)


def test_created_once_with_mode_0600_then_read_back(tmp_path: Path) -> None:
    default = tmp_path / "tierless-admin.token"
    token, notice = load_or_create(file=None, value=None, default_file=default, what="admin")
    assert notice == f"admin token: created {default} (mode 0600); read it from there"
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert default.read_text() == token + "\n"
    assert load_or_create(file=None, value=None, default_file=default, what="admin") == (
        token,
        None,
    )
    assert [p.name for p in tmp_path.iterdir()] == [default.name]  # no temporary file left


def test_a_dangling_symlink_at_the_default_path_is_refused_not_written_through(
    tmp_path: Path,
) -> None:
    default = tmp_path / "tierless-admin.token"
    default.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="is a symlink"):
        load_or_create(file=None, value=None, default_file=default, what="admin")
    assert not (tmp_path / "elsewhere").exists()
