"""Run by test_buffer_crash: ingest and 'sync' against a fake receiver file until killed.

argv: buffer path, receiver path. Prints the highest committed value after every commit.
The fake receiver is what the real one does with a batch: store it once per seq, refuse (record)
a fork. Kept apart from the buffer in its own SQLite file, as the cloud is.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from tests.agent.helpers import T0, cut, decode, key, open_test_buffer, values_of
from wire.models import GENESIS


def receive(cloud: sqlite3.Connection, seq: int, digest: bytes, body: bytes) -> None:
    row = cloud.execute("SELECT digest FROM batch WHERE seq = ?", (seq,)).fetchone()
    if row is not None:
        if row[0] != digest:
            cloud.execute("INSERT INTO conflict VALUES (?, 'same seq, other digest')", (seq,))
        return
    prev = cloud.execute("SELECT digest FROM batch WHERE seq = ?", (seq - 1,)).fetchone()
    if decode(body).prev != (prev[0] if prev else GENESIS):
        cloud.execute("INSERT INTO conflict VALUES (?, 'prev is not the head')", (seq,))
        return
    cloud.execute("INSERT INTO batch VALUES (?, ?, ?)", (seq, digest, body))


def open_cloud(path: str) -> sqlite3.Connection:
    cloud = sqlite3.connect(path, isolation_level=None)
    cloud.execute("PRAGMA journal_mode=WAL")
    cloud.execute("PRAGMA synchronous=FULL")
    cloud.execute("CREATE TABLE IF NOT EXISTS batch (seq PRIMARY KEY, digest, body)")
    cloud.execute("CREATE TABLE IF NOT EXISTS conflict (seq, reason)")
    return cloud


def drain_and_check(db: Path, cloud_path: Path, reported: int) -> None:
    """Drain what the buffer at `db` holds to the fake receiver, then check the whole history:
    no conflict, seqs 1..n, and values 1..top once each, in order, with every value a child
    reported as committed among them."""
    buf = open_test_buffer(db)
    cloud = open_cloud(str(cloud_path))
    while (entry := buf.outbox_head() or cut(buf, max_readings=500)) is not None:
        receive(cloud, entry.seq, entry.digest, entry.body)
        buf.ack(entry.seq, now_ms=0)
    buf.close()
    try:
        assert cloud.execute("SELECT * FROM conflict").fetchall() == []
        seqs = [s for (s,) in cloud.execute("SELECT seq FROM batch ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))
        values = [
            v
            for (body,) in cloud.execute("SELECT body FROM batch ORDER BY seq")
            for _m, _t, v, _q in values_of(decode(body))
        ]
    finally:
        cloud.close()
    assert values, "nothing was committed"
    top = int(max(values))
    assert top >= reported  # every commit a child reported arrived
    assert sorted(values) == [float(v) for v in range(1, top + 1)]  # once each, no gaps
    assert values == sorted(values)  # and in order


def main() -> None:
    buf = open_test_buffer(Path(sys.argv[1]))
    cloud = open_cloud(sys.argv[2])
    n = int(buf.last_values().get(1, (0, 0.0))[1])
    i = 0
    while True:
        rows = [(1, T0 + 1000 * k, float(k), 0) for k in range(n + 1, n + 51)]
        buf.commit(rows, new_series=[] if 1 in buf.series else [(1, key(1))])
        n += 50
        print(n, flush=True)
        i += 1
        if i % 3 == 0:
            entry = buf.outbox_head() or cut(buf, max_readings=120)
            if entry is not None:
                receive(cloud, entry.seq, entry.digest, entry.body)
                buf.ack(entry.seq, now_ms=T0)


if __name__ == "__main__":
    main()
