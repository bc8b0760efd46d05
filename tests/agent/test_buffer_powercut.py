"""Power cuts, not just kill -9: the buffer on a file system that forgets what was not fsynced.

`tests.agent.lazyfs` keeps every write in its own memory until the file is fsynced. A cycle:
the crash child (the buffer plus a fake receiver kept on ordinary disk, see `crash_child`)
commits and ships batches; at a random moment it is killed, then the file system process is
killed too, which throws away everything not synced, as a power cut does; the dead mount is
detached and a fresh file system is mounted over the same backing directory, and the next child
opens the same buffer. At the end the buffer is drained.

What must hold: every value whose commit returned (the child printed it after `commit`) reaches
the receiver, exactly once and in order, and no seq is ever sent twice with other bytes (the fake
receiver records a conflict). This is what `PRAGMA synchronous=FULL` and the frozen outbox promise
(agent/buffer.py, invariants 1 and 2). TIERLESS_POWERCUT_CYCLES sets the number of cuts.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent.crash_child import drain_and_check
from tests.conftest import service_missing

CYCLES = int(os.environ.get("TIERLESS_POWERCUT_CYCLES", "12"))
ROOT = Path(__file__).resolve().parents[2]


def fuse_unavailable() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if os.geteuid() != 0:
        return "mounting FUSE here needs root"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: the package is there, libfuse3 is not
        return f"mfusepy/libfuse3 (apt-get install fuse3): {exc}"
    return None


@pytest.fixture
def require_fuse() -> None:
    reason = fuse_unavailable()
    if reason is not None:
        service_missing(f"FUSE ({reason})")


class LazyMount:
    """The lazy file system over `backing`, mounted at `mountpoint`, in a process of its own."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing, self.mountpoint = backing, mountpoint
        self.proc: subprocess.Popen[bytes] | None = None

    def mount(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.agent.lazyfs", str(self.backing), str(self.mountpoint)],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"lazyfs did not mount (exit {self.proc.poll()})")
            time.sleep(0.02)

    def cut_power(self) -> None:
        """Kill the file system with its unsynced pages, and detach the dead mount."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["umount", "-l", str(self.mountpoint)], check=True)
        self.proc = None


def run_until_cut(mount: LazyMount, db: Path, cloud: Path, rng: random.Random) -> int:
    """One power cycle: returns the highest value the child reported as committed."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.agent.crash_child", str(db), str(cloud)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            first = child.stdout.readline()
            assert first, "child died before committing anything"
            time.sleep(rng.uniform(0.0, 0.4))
            child.send_signal(signal.SIGKILL)
            out = first + child.stdout.read()
        finally:
            child.kill()
    mount.cut_power()
    return int(out.split()[-1])


def test_power_cuts_never_lose_a_commit_nor_reuse_a_seq(tmp_path, require_fuse):
    rng = random.Random(int(os.environ.get("TIERLESS_POWERCUT_SEED", "7")))
    backing, mnt, cloud_path = tmp_path / "disk", tmp_path / "mnt", tmp_path / "cloud.db"
    backing.mkdir()
    mnt.mkdir()
    mount = LazyMount(backing, mnt)
    reported = 0
    try:
        for _ in range(CYCLES):
            mount.mount()
            reported = max(reported, run_until_cut(mount, mnt / "buffer.db", cloud_path, rng))
    finally:
        if mount.proc is not None:
            mount.cut_power()
    # Drain what survived on the backing disk itself: the last cut is the last word.
    drain_and_check(backing / "buffer.db", cloud_path, reported)


def test_the_lazy_file_system_forgets_what_was_not_synced(tmp_path, require_fuse):
    """The tool itself: without this, a lazyfs that synced everything would pass the test above."""
    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    backing.mkdir()
    mnt.mkdir()
    mount = LazyMount(backing, mnt)
    mount.mount()
    try:
        with open(mnt / "kept", "wb") as f:
            f.write(b"synced")
            f.flush()
            os.fsync(f.fileno())
            f.write(b" and then not")
        with open(mnt / "lost", "wb") as f:
            f.write(b"never synced")
        assert (mnt / "kept").read_bytes() == b"synced and then not"  # visible while powered
    finally:
        mount.cut_power()
    assert (backing / "kept").read_bytes() == b"synced"
    assert (backing / "lost").read_bytes() == b""  # the file was created; its data never synced
    shutil.rmtree(backing)
