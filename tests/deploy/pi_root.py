"""A throw-away ARM root for `make pi-check`: an overlay on a cached Debian root, chrooted.

`deploy/pi/pi-root.sh` builds the cached roots (debootstrap, once per machine); a `PiRoot` mounts
one read-only under a fresh writable layer, so every check starts from the same blank system
and never changes the cache. Inside: /proc, a small /dev (the usual character devices, /dev/pts
shared with the host so a pty made on the host opens inside), the host's resolv.conf and CA
bundle (pip reaches PyPI; the chroot shares the host's network, loopback included), pip's cache
(kept per architecture: on armhf it holds the wheels pip compiled, which later runs reuse) and
the project's dist/ at /media/usb/wheelhouse, read-only, as the USB stick of docs/install.md.
Commands run under qemu-user-static through binfmt_misc, found by the kernel: nothing is copied
into the root for that.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOTS = Path(os.environ.get("PI_ROOTS", "/var/cache/tierless-pi"))
STAMP = ".tierless-pi-root"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cached_root(arch: str) -> Path:
    return ROOTS / f"bookworm-{arch}"


def _sh(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=60)


class PiRoot:
    def __init__(self, arch: str, work: Path, dist: Path) -> None:
        self.arch = arch
        self.lower = cached_root(arch)
        self.work = work
        self.path = work / "root"
        self.dist = dist
        self.pip_cache = ROOTS / f"pip-cache-{arch}"
        self._mounts: list[Path] = []

    def __enter__(self) -> PiRoot:
        upper, scratch = self.work / "upper", self.work / "overlay-work"
        for d in (upper, scratch, self.path, self.pip_cache):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self._mount(
                self.path,
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={self.lower},upperdir={upper},workdir={scratch}",
            )
            self._mount(self.path / "proc", "-t", "proc", "proc")
            dev = self.path / "dev"
            self._mount(dev, "-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs")
            for name in DEVICES:
                self.bind(Path("/dev") / name, dev / name)
            self._mount(dev / "pts", "--bind", "/dev/pts")
            (dev / "ptmx").symlink_to("pts/ptmx")
            self._mount(dev / "shm", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs")
            self._mount(self.path / "root/.cache/pip", "--bind", self.pip_cache)
            self._mount(self.path / "media/usb/wheelhouse", "--bind", self.dist)
            _sh("mount", "-o", "remount,bind,ro", self.path / "media/usb/wheelhouse")
            shutil.copyfile("/etc/resolv.conf", self.path / "etc/resolv.conf")
            # The host's trust too: a machine behind a TLS-inspecting proxy reaches PyPI only
            # through the proxy's CA, which its own bundle holds (a Pi on such a site needs it too).
            shutil.copyfile(HOST_CA, self.path / HOST_CA.relative_to("/"))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _mount(self, target: Path, *args: str | Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        _sh("mount", *args, target)
        self._mounts.append(target)

    def bind(self, source: Path, target: Path) -> None:
        """Bind-mount a device node (or file) of the host at `target` inside the root."""
        target.touch()
        _sh("mount", "--bind", source, target)
        self._mounts.append(target)

    def close(self) -> None:
        # Newest first; a lazy unmount when a process still holds one, so the test never hangs.
        for target in reversed(self._mounts):
            done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
        self._mounts.clear()

    def argv(self, command: Sequence[str | Path], *, user: str | None = None) -> list[str]:
        """The host command running `command` in the root, as root or as `user` (with the
        supplementary groups the root's /etc/group gives it), with a clean environment."""
        spec: list[str] = []
        home = "/root"
        if user is not None:
            uid, gid, home = self.account(user)
            groups = self.groups_of(user)
            spec = [f"--userspec={uid}:{gid}"]
            if groups:
                spec.append(f"--groups={','.join(map(str, groups))}")
        env = ["env", "-i", f"PATH={PATH}", f"HOME={home}", "LANG=C.UTF-8"]
        return ["chroot", *spec, str(self.path), *env, *map(str, command)]

    def run(
        self, command: Sequence[str | Path], *, user: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        # A session of its own, so that a timeout kills what the command started too (pip's
        # compiler), not only the command.
        with subprocess.Popen(
            self.argv(command, user=user),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def account(self, user: str) -> tuple[int, int, str]:
        for line in (self.path / "etc/passwd").read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2]), int(fields[3]), fields[5]
        raise LookupError(f"{self.path}/etc/passwd: no user {user}")

    def groups_of(self, user: str) -> list[int]:
        out = []
        for line in (self.path / "etc/group").read_text(encoding="utf-8").splitlines():
            name, _, gid, members = line.split(":")
            if user in members.split(","):
                out.append(int(gid))
        return out

    def group_id(self, group: str) -> int:
        for line in (self.path / "etc/group").read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if fields[0] == group:
                return int(fields[2])
        raise LookupError(f"{self.path}/etc/group: no group {group}")
