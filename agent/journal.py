"""The buffer's append journal: fresh group commits as fsynced appends, merged into SQLite in bulk.

Why: a group commit straight into SQLite rewrites whole B-tree pages (the readings table's last
leaf and its parents, `meta`) into the WAL and later checkpoints them, about five times the bytes
of the readings themselves; on an SD card those bytes are the card's life. An append of one
record per flush writes little more than the record. `agent.buffer` appends each plain group
commit here and merges the journal into its tables in one transaction when it cuts a batch, when
the journal grows past a bound, on a commit that changes the schema-like tables (new series,
epochs), and on open and close.

Byte layout (little-endian), records back to back from offset 0:

    u32 length | u32 crc32(length bytes + payload) | payload (`length` bytes, MessagePack `Record`)

Invariants:
1. A record is durable when `append` returned: written at the end of the good bytes and
   `fdatasync`ed (the size is data for fdatasync). A failed append truncates back to the good
   length, so a later record never lands after garbage.
2. Records carry strictly increasing `seq`. The merge transaction stores the highest merged
   seq in the buffer's `meta` (`journal_merged_seq`); records at or below it are skipped as
   readings on replay, so merged records may stay in the file, and a crash between a merge and
   a reset (`Journal.reset`, to one base record with that seq, see `agent.buffer`) replays
   nothing twice. A record whose seq is not above the one before is where a reset was cut
   short: decoding stops there as at a bad tail.
3. A torn or corrupt tail (power cut mid-append, zeroed blocks) is found by the length and the
   checksum: decoding stops at the first bad record, everything before it is kept, the rest is
   reported (`Decoded.problem`) and dropped. A record whose append returned is never in that tail.

`encode_record` and `decode_journal` are sans-I/O; `Journal` is the only code that touches the
file. OSError is translated to StoreError here.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from agent.errors import StoreError

_HEADER = struct.Struct("<II")
MAX_RECORD_BYTES = 64 * 1024 * 1024  # a length above this is corruption, not a record
JOURNAL_SUFFIX = ".journal"


class Record(msgspec.Struct, array_like=True, frozen=True):
    """One group commit, as `Buffer.commit` got it (events with their attrs already encoded),
    with the config span it was committed under. New fields go last, with a default: an older
    record (a shorter array) still decodes, and an older agent ignores trailing fields."""

    seq: int
    rows: list[tuple[int, int, float, int]] = []  # series_id, ts_ms, value, quality
    events: list[tuple[str, int, int, bytes]] = []  # kind, ts_ms, quality, attrs
    positions: dict[int, tuple[int, int] | None] = {}  # MCU uid -> (boot, seq), None: forget
    states: dict[str, bytes] = {}
    dropped_before: int = 0
    rejected_before: dict[str, int] = {}
    # The buffer's config span the rows were committed under (agent.buffer invariant 7). Last,
    # with a default: a record written before spans were journaled decodes as span 0, "version
    # unknown", the buffer's own convention for rows an older agent stored.
    cfg: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Record)


def encode_record(record: Record) -> bytes:
    """The framed bytes of one record."""
    payload = _encoder.encode(record)
    length = len(payload).to_bytes(4, "little")
    return _HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


@dataclass(slots=True)
class Decoded:
    records: list[Record] = field(default_factory=list)
    good_bytes: int = 0  # the length of the intact prefix
    problem: str | None = None  # why decoding stopped before the end, if it did


def decode_journal(data: bytes) -> Decoded:
    """Every intact record from the start of `data`, up to the first torn or corrupt one."""
    out = Decoded()
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            out.problem = f"torn record header at byte {pos}"
            break
        length, crc = _HEADER.unpack_from(view, pos)
        start = pos + _HEADER.size
        if length > MAX_RECORD_BYTES or start + length > len(data):
            out.problem = f"torn record at byte {pos} (length {length})"
            break
        payload = view[start : start + length]
        if zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little"))) != crc:
            out.problem = f"checksum mismatch in the record at byte {pos}"
            break
        try:
            record = _decoder.decode(payload)
        except msgspec.DecodeError as exc:  # right checksum, wrong content: another version
            out.problem = f"undecodable record at byte {pos}: {exc}"
            break
        if out.records and record.seq <= out.records[-1].seq:
            out.problem = f"stale record (seq {record.seq}) at byte {pos}: a reset cut short"
            break
        out.records.append(record)
        pos = start + length
    out.good_bytes = pos
    return out


class Journal:
    """The journal file, open for appends. Build it with `Journal.open`."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self._fd = fd
        self.size = size  # bytes of intact records

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open (or create, owner-only) the journal; a new file's directory entry is synced."""
        existed = path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the journal: {exc.strerror}") from exc
        journal = cls(path, fd, 0)
        try:
            journal.size = os.fstat(fd).st_size
            if not existed:
                _sync_dir(path.parent)
        except OSError as exc:
            journal.close()
            raise StoreError(f"{path}: {exc.strerror}") from exc
        return journal

    def read(self) -> bytes:
        try:
            size = os.fstat(self._fd).st_size
            return os.pread(self._fd, size, 0)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the journal: {exc.strerror}") from exc

    def append(self, frame: bytes) -> None:
        """Write one framed record after the intact ones and fdatasync it (invariant 1)."""
        try:
            written = os.pwrite(self._fd, frame, self.size)
            if written != len(frame):
                raise OSError(28, f"short write ({written} of {len(frame)} bytes)")
            os.fdatasync(self._fd)
        except OSError as exc:
            # if this fails too, the next open finds the bad tail by its checksum (invariant 3)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise StoreError(f"{self.path}: cannot append to the journal: {exc.strerror}") from exc
        self.size += len(frame)

    def reset(self, base: bytes) -> None:
        """After a merge: the file becomes the one framed record `base`. Written over the start
        first, then cut to its length: a crash in between leaves `base` followed by a bad tail
        of merged records, which decoding drops (invariant 3); nothing unmerged is lost."""
        try:
            os.pwrite(self._fd, base, 0)
            os.ftruncate(self._fd, len(base))
            os.fdatasync(self._fd)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot reset the journal: {exc.strerror}") from exc
        self.size = len(base)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unmerged(path: Path, merged_seq: int) -> list[Record]:
    """The records the journal at `path` holds beyond `merged_seq`, read without opening it for
    writing (for `status`, tests and the bench: the buffer's tables and `meta` count merged
    readings and events only)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the journal: {exc.strerror}") from exc
    return [r for r in decode_journal(data).records if r.seq > merged_seq]


def unmerged_rows(path: Path, merged_seq: int) -> list[tuple[int, int, float, int]]:
    """The readings of `unmerged`, oldest first."""
    return [row for r in unmerged(path, merged_seq) for row in r.rows]


def readings_after(path: Path, merged_seq: int) -> int:
    """How many readings `unmerged` finds."""
    return len(unmerged_rows(path, merged_seq))
