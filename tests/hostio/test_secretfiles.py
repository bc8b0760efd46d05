"""The secret-file rule on real files: modes, owners, symlinks, FIFOs, directories, races."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from hostio import secretfiles
from hostio.errors import (
    SecretFileError,
    SecretFileExistsError,
    SecretFileMissingError,
    SecretFileUnsafeError,
)
from hostio.secretfiles import read_secret_file, read_secret_text, write_secret_file

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")


@pytest.fixture
def private(tmp_path: Path) -> Path:
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    return d


def test_round_trip_is_0600_with_nothing_left_behind(private):
    path = private / "secret"
    write_secret_file(path, b"s3cret\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = read_secret_file(path)
    assert secret.data == b"s3cret\n"
    assert (secret.status.st_ino, secret.status.st_size) == (path.stat().st_ino, 7)
    assert [p.name for p in private.iterdir()] == ["secret"]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_the_mode_is_0600_whatever_the_umask(tmp_path, umask):
    path = tmp_path / "a" / "b" / "secret"
    old = os.umask(umask)
    try:
        write_secret_file(path, b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for d in (tmp_path / "a", tmp_path / "a" / "b"):  # every directory made, not only the last
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert read_secret_file(path).data == b"x"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o601, 0o610])
def test_any_group_or_other_bit_is_refused(private, mode):
    path = private / "secret"
    write_secret_file(path, b"x")
    path.chmod(mode)
    with pytest.raises(SecretFileUnsafeError) as info:
        read_secret_file(path, what="token file")
    assert str(info.value) == (
        f"Permissions {mode:04o} for '{path}' are too open; chmod 600 '{path}' "
        "(a token file must not be readable by group or others)"
    )
    assert info.value.path == str(path)


def test_a_symlink_is_refused_not_followed(private):
    real = private / "real"
    write_secret_file(real, b"x")
    link = private / "secret"
    link.symlink_to(real)
    with pytest.raises(SecretFileUnsafeError, match="is a symlink; refusing to follow it"):
        read_secret_file(link)


def test_a_fifo_is_refused_at_once_without_a_writer(private):
    # Without O_NONBLOCK the open would wait for a writer forever; the per-test timeout and
    # the thread check below catch a regression without hanging the suite.
    fifo = private / "secret"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=_read_into, args=(fifo, outcome), name="fifo-reader")
    reader.start()
    reader.join(timeout=5)
    hung = reader.is_alive()
    if hung:  # release the reader so that no thread outlives the test
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert not hung, "opening a FIFO blocked"
    assert isinstance(outcome[0], SecretFileUnsafeError)
    assert "is not a regular file" in str(outcome[0])


def _read_into(path: Path, outcome: list[BaseException]) -> None:
    try:
        read_secret_file(path)
    except BaseException as exc:
        outcome.append(exc)


def test_a_directory_is_not_a_regular_file(private):
    d = private / "secret"
    d.mkdir(mode=0o700)
    with pytest.raises(SecretFileUnsafeError, match="is not a regular file"):
        read_secret_file(d)


def test_missing(private):
    with pytest.raises(SecretFileMissingError, match=f"secret file '{private}/nope' does not"):
        read_secret_file(private / "nope")


@needs_root
def test_another_owner_is_refused_unless_root_reads_any(private):
    path = private / "secret"
    write_secret_file(path, b"x")
    os.chown(path, 12345, -1)
    with pytest.raises(SecretFileUnsafeError, match=r"owned by uid 12345, not by this user"):
        read_secret_file(path)
    assert read_secret_file(path, root_reads_any=True).data == b"x"


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_directory_others_can_write_is_refused(private, mode):
    path = private / "secret"
    write_secret_file(path, b"x")
    private.chmod(mode)
    with pytest.raises(SecretFileUnsafeError, match=f"chmod 700 '{private}'"):
        read_secret_file(path)


def test_a_sticky_directory_is_accepted(private):
    path = private / "secret"
    write_secret_file(path, b"x")
    private.chmod(0o1777)
    assert read_secret_file(path).data == b"x"


def test_size_cap(private):
    path = private / "secret"
    write_secret_file(path, b"x" * 101)
    with pytest.raises(SecretFileUnsafeError, match="larger than 100 bytes"):
        read_secret_file(path, max_bytes=100)
    assert len(read_secret_file(path, max_bytes=101).data) == 101


def test_text_is_decoded_not_stripped(private):
    path = private / "password"
    write_secret_file(path, "pässword\nsecond\n".encode())
    assert read_secret_text(path) == "pässword\nsecond\n"
    with pytest.raises(SecretFileError, match="is not ASCII text"):
        read_secret_text(path, encoding="ascii")
    write_secret_file(path, b"\xff", replace=True)
    with pytest.raises(SecretFileError, match="is not UTF-8 text"):
        read_secret_text(path, what="password file")


def test_no_replace_leaves_a_file_or_a_dangling_symlink_alone(private):
    path = private / "secret"
    write_secret_file(path, b"one")
    with pytest.raises(SecretFileExistsError, match="already exists; refusing to replace it"):
        write_secret_file(path, b"two")
    assert path.read_bytes() == b"one"
    dangling = private / "other"
    dangling.symlink_to(private / "nowhere")
    with pytest.raises(SecretFileExistsError):
        write_secret_file(dangling, b"two")
    assert not (private / "nowhere").exists()  # the link was not followed
    assert sorted(p.name for p in private.iterdir()) == ["other", "secret"]


def test_replace_swaps_the_whole_file(private):
    path = private / "secret"
    write_secret_file(path, b"one")
    write_secret_file(path, b"two", replace=True)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_two_writers_one_winner(private):
    path = private / "secret"
    errors: list[SecretFileError] = []
    barrier = threading.Barrier(8)

    def write(n: int) -> None:
        barrier.wait()
        try:
            write_secret_file(path, b"%d" % n * 1000)
        except SecretFileExistsError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,), name=f"w{n}") for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 7
    data = path.read_bytes()
    assert len(data) == 1000
    assert len(set(data)) == 1  # one writer's bytes, whole
    assert [p.name for p in private.iterdir()] == ["secret"]


def test_a_write_that_fails_leaves_no_temporary_file(private, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(SecretFileError, match="cannot write file '.*': Input/output error"):
        write_secret_file(private / "secret", b"x", replace=True)
    assert list(private.iterdir()) == []


def test_a_file_system_without_hard_links_falls_back_to_rename(private, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")  # what FAT answers

    monkeypatch.setattr(os, "link", no_links)
    path = private / "secret"
    write_secret_file(path, b"one")
    assert path.read_bytes() == b"one"
    with pytest.raises(SecretFileExistsError):
        write_secret_file(path, b"two")
    assert path.read_bytes() == b"one"
    assert [p.name for p in private.iterdir()] == ["secret"]


def test_move_remove_and_exists(private):
    a, b = private / "a", private / "b"
    write_secret_file(a, b"x")
    secretfiles.move_into_place(a, b)
    assert (secretfiles.exists(a), secretfiles.exists(b)) == (False, True)
    secretfiles.remove_file(b)
    secretfiles.remove_file(b)  # gone already: nothing to do
    assert not secretfiles.exists(b)
    (private / "dangling").symlink_to(private / "nowhere")
    assert secretfiles.exists(private / "dangling")
    with pytest.raises(SecretFileError, match="cannot move"):
        secretfiles.move_into_place(private / "nope", b)
