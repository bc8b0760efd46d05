"""The redelivery record: which QoS 1 messages were already handed to the buffer.

A broker resends a message it has no PUBACK for (DUP set) when the session resumes. If its
readings were committed but the PUBACK never arrived (a crash, a dropped connection), adding
them again would duplicate them. `Seen` keeps, for the messages that could come back, packet
id -> 64-bit hash of topic and payload; a DUP message matching an entry is acknowledged without
adding anything. In memory it covers reconnects. Across restarts it rides in the agent's buffer:
the source registers `capture` with the ingest (`Ingest.track_state`), which calls it as it
takes each group, so the record committed in a group's transaction lists exactly the messages
whose readings are in that group or an earlier one: no window in which a kill -9 or a power cut
leaves readings committed and their record not (or the other way round).

Record layout (little-endian): magic `TLMQ`, entry count u32, CRC-32 of the entries u32,
reserved u32, 8-byte hash of broker URL + client id; then per entry packet id u16, hash u64. A
record for another broker or client id, or one that fails its CRC, is not trusted (which can
only turn a skip into a duplicate, never a message into a loss). Version 0.1.0 kept the
same bytes in `<state_dir>/<source>.mqtt-seen`, written after each commit: `load_file` reads it
once, when the buffer holds no record yet, and the source deletes it.

Why packet ids are safe keys: in-flight packet ids are unique, and Mosquitto (like EMQX) hands
them out in sequence per session, so an id comes back for a *new* message only after 65,535
others, far more than the acknowledged entries kept; a new message (no DUP) with a known id
replaces the entry. A broker that reuses the lowest free id right away could make a new,
byte-identical message look like a redelivery: use `dedupe = "off"` there.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def fingerprint(topic: str, payload: bytes) -> int:
    h = hashlib.blake2b(topic.encode(), digest_size=8)
    h.update(b"\0")
    h.update(payload)
    return int.from_bytes(h.digest(), "little")


_SEEN_HEADER = struct.Struct("<4sIII8s")  # magic, count, crc32 of entries, reserved, identity
_SEEN_ENTRY = struct.Struct("<HQ")  # packet id, fingerprint
_SEEN_MAGIC = b"TLMQ"


@dataclass(slots=True, eq=False)
class Entry:
    fp: int
    gen: int  # the connection that delivered it; -1: read from the file (a previous process)
    acked: bool = False


class Seen:
    """Messages handled whose redelivery must be recognised (see the module docstring).

    Kept: every entry not yet acknowledged (the broker may send it again), and the last
    `keep_acked` acknowledged ones (a PUBACK can be lost with its connection). An unacknowledged
    entry of an older connection goes at the first fresh (no DUP) message of a newer one: a
    broker resends its in-flight messages first, so by then what it did not resend it will not.
    `cap` bounds memory whatever a broker does.
    """

    def __init__(
        self,
        identity: bytes,
        keep_acked: int,
        *,
        enabled: bool,
        cap: int = 200_000,
    ) -> None:
        self.identity = hashlib.blake2b(identity, digest_size=8).digest()
        self.keep_acked = keep_acked
        self.cap = cap
        self.enabled = enabled
        self._entries: dict[int, Entry] = {}  # packet id -> entry, oldest first
        self._acked: collections.deque[tuple[int, Entry]] = collections.deque()
        self._pruned_gen = -1
        self._changed = False  # since the last capture

    def load(self, data: bytes | None) -> bool:
        """Take the entries of a committed record; True if it was there for this broker and
        client id (the session it names may still hold messages for us)."""
        if data is None or not self.enabled or len(data) < _SEEN_HEADER.size:
            return False
        magic, count, crc, _, identity = _SEEN_HEADER.unpack_from(data)
        body = data[_SEEN_HEADER.size : _SEEN_HEADER.size + count * _SEEN_ENTRY.size]
        if magic != _SEEN_MAGIC or len(body) != count * _SEEN_ENTRY.size:
            return False
        if identity != self.identity or zlib.crc32(body) != crc:
            return bool(identity == self.identity)
        for mid, fp in _SEEN_ENTRY.iter_unpack(body):
            self._entries[mid] = Entry(fp, -1)
        return True

    def load_file(self, path: Path) -> bool:
        """`load` from an older version's side file (see the module docstring)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot read %s (%s): redeliveries may become duplicates", path, exc)
            return False
        loaded = self.load(data)
        self._changed = self._changed or bool(self._entries)
        return loaded

    def match(self, mid: int, fp: int) -> Entry | None:
        entry = self._entries.get(mid)
        return entry if entry is not None and entry.fp == fp else None

    def add(self, mid: int, fp: int, gen: int) -> Entry | None:
        if not self.enabled:
            return None
        entries = self._entries
        entries.pop(mid, None)
        entry = entries[mid] = Entry(fp, gen)
        if len(entries) > self.cap:
            del entries[next(iter(entries))]
        self._changed = True
        return entry

    def acked(self, mid: int, entry: Entry) -> None:
        """The PUBACK for `entry` has been sent."""
        if entry.acked:
            return
        entry.acked = True
        self._acked.append((mid, entry))
        while len(self._acked) > self.keep_acked:
            old_mid, old = self._acked.popleft()
            if self._entries.get(old_mid) is old:
                del self._entries[old_mid]
                self._changed = True

    def fresh(self, gen: int) -> None:
        """A message without DUP arrived on connection `gen`: redeliveries are over."""
        if gen == self._pruned_gen:
            return
        self._pruned_gen = gen
        stale = [m for m, e in self._entries.items() if e.gen < gen and not e.acked]
        for mid in stale:
            del self._entries[mid]
        self._changed = self._changed or bool(stale)

    def clear(self) -> bool:
        """Forget everything (a new session: nothing can be redelivered); True if there was
        something to forget."""
        had = bool(self._entries)
        self._entries.clear()
        self._acked.clear()
        self._changed = self._changed or had
        return had

    def snapshot(self) -> list[tuple[int, int]]:
        return [(m, e.fp) for m, e in self._entries.items()] if self.enabled else []

    def encode(self) -> bytes:
        """The record as committed (layout in the module docstring)."""
        body = b"".join(_SEEN_ENTRY.pack(m, f) for m, f in self.snapshot())
        count = len(body) // _SEEN_ENTRY.size
        header = _SEEN_HEADER.pack(_SEEN_MAGIC, count, zlib.crc32(body), 0, self.identity)
        return header + body

    def capture(self) -> bytes | None:
        """The record if it changed since the last capture, else None (`Ingest.track_state`)."""
        if not self.enabled or not self._changed:
            return None
        self._changed = False
        return self.encode()
