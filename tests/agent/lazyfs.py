"""A FUSE file system that forgets everything not fsynced, for power-cut tests (after Jepsen's
LazyFS).

It passes through to a backing directory, except file contents: writes and truncates change an
in-memory copy of the file, which reaches the backing file only when that file is fsynced
(fsync or fdatasync). The memory is this process's own, so `kill -9` of this process is a power
cut: what was not synced is gone, what was synced is on the backing disk. The test then
lazy-unmounts the dead mount and mounts a fresh process over the same backing directory.

Invariants:
- A path has an entry in `_unsynced` iff its contents differ from the backing file; that entry
  holds the whole current contents (the files under test are a few MiB at most).
- Reads and sizes come from `_unsynced` when there is an entry, else from the backing file.
- Directory operations (create, unlink, rename, mkdir, rmdir, chmod) reach the backing directory
  at once. That errs on the side of keeping files rather than data: a real journalling file
  system orders metadata too, and SQLite's durability rests on fsync of file contents, which is
  what this file system takes away.

Single-threaded (`nothreads`): callbacks never race. Locks (SQLite's fcntl locks) are left to
the kernel's local lock handling, which is right for processes on one machine.

Usage: python -m tests.agent.lazyfs BACKING MOUNTPOINT   (runs in the foreground until killed)
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import mfusepy


class LazyFS(mfusepy.Operations):  # type: ignore[misc]  # mfusepy is untyped
    def __init__(self, backing: str) -> None:
        self._backing = os.path.realpath(backing)
        self._unsynced: dict[str, bytearray] = {}

    def _real(self, path: str) -> str:
        return os.path.join(self._backing, path.lstrip("/"))

    def _contents(self, path: str) -> bytearray:
        """The current contents, copied into memory on the first unsynced change."""
        buf = self._unsynced.get(path)
        if buf is None:
            with open(self._real(path), "rb") as f:
                buf = bytearray(f.read())
            self._unsynced[path] = buf
        return buf

    # metadata: straight to the backing directory
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise mfusepy.FuseOSError(exc.errno) from exc
        attrs = {
            key: getattr(st, key)
            for key in (
                "st_mode",
                "st_nlink",
                "st_uid",
                "st_gid",
                "st_size",
                "st_atime",
                "st_mtime",
                "st_ctime",
            )
        }
        if path in self._unsynced:
            attrs["st_size"] = len(self._unsynced[path])
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {
            key: getattr(st, key)
            for key in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[float, float] | None = None) -> int:
        os.utime(self._real(path), times)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        self._unsynced.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._real(old), self._real(new))
        self._unsynced.pop(new, None)
        if old in self._unsynced:
            self._unsynced[new] = self._unsynced.pop(old)
        return 0

    # file handles: real descriptors on the backing files
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        # O_TRUNC of an existing file reaches us as truncate(), which stays in memory
        return os.open(self._real(path), os.O_RDWR | os.O_CREAT, mode)

    def open(self, path: str, flags: int) -> int:
        fd = os.open(self._real(path), (flags & ~os.O_TRUNC & ~os.O_APPEND) | os.O_RDWR)
        if flags & os.O_TRUNC:
            self._unsynced[path] = bytearray()
        return fd

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close(2) is no fsync

    # contents: in memory until fsync
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        buf = self._unsynced.get(path)
        if buf is not None:
            return bytes(buf[offset : offset + size])
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        buf = self._contents(path)
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset : offset + len(data)] = data
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        buf = self._contents(path)
        if length < len(buf):
            del buf[length:]
        else:
            buf.extend(bytes(length - len(buf)))
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        buf = self._unsynced.pop(path, None)
        if buf is not None:
            fd = os.open(self._real(path), os.O_WRONLY)
            try:
                os.pwrite(fd, buf, 0)
                os.ftruncate(fd, len(buf))
                os.fsync(fd)
            finally:
                os.close(fd)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # directory operations are already on the backing disk


def main() -> None:
    backing, mountpoint = sys.argv[1], sys.argv[2]
    mfusepy.FUSE(LazyFS(backing), mountpoint, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()
