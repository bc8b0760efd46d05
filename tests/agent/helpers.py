"""Small builders shared by the agent tests."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path
from typing import Any

from agent.buffer import Buffer, open_buffer
from agent.journal import JOURNAL_SUFFIX, unmerged_rows
from wire.codec import decode_batch
from wire.models import Batch, ClockReport, SeriesKey

BOOT = "kernel-boot-1"
T0 = 1_800_000_000_000  # 2027-01-15, well inside the contract's range


def open_test_buffer(path: Path, *, max_bytes: int = 64 * 1024 * 1024) -> Buffer:
    return open_buffer(path, max_bytes=max_bytes, kernel_boot_id=BOOT)


def journal_rows(db: Path) -> list[tuple[int, int, float, int]]:
    """The readings a buffer file's append journal holds beyond its last merge (committed, not
    yet in the `reading` table): what a test reading the file behind a running or killed agent
    must add to the table's rows, after them."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'journal_merged_seq'").fetchone()
    finally:
        conn.close()
    return unmerged_rows(Path(f"{db}{JOURNAL_SUFFIX}"), int(row[0]) if row else 0)


def damage_outbox_body(db: Path, *, raw: bool = False) -> None:
    """Flip one byte in the only outbox body (stored raw first if `raw`, as an agent does when
    deflating would not shrink it): damage `PRAGMA quick_check` does not see."""
    conn = sqlite3.connect(db)
    body, coding = conn.execute("SELECT body, coding FROM outbox").fetchone()
    assert coding == 1  # deflated, as every body this small is
    if raw:
        body, coding = zlib.decompress(body), 0
    bad = bytearray(body)
    bad[len(bad) // 2] ^= 0xFF
    conn.execute("UPDATE outbox SET body = ?, coding = ?", (bytes(bad), coding))
    conn.commit()
    conn.close()


def key(i: int) -> SeriesKey:
    return SeriesKey(f"m{i}", "kWh", site="s1", medium="electricity")


def cut(buf: Buffer, *, max_readings: int = 10_000, max_bytes: int = 1 << 20, newest=False):
    return buf.cut(
        device_id="gw-test",
        boot_id="b1",
        clock=ClockReport(),
        max_readings=max_readings,
        max_bytes=max_bytes,
        newest=newest,
    )


def values_of(batch: Batch) -> list[tuple[str, int, float, int]]:
    return [(r.series.metric, r.ts_ms, r.value, r.quality) for r in batch.readings()]


def decode(body: bytes) -> Batch:
    return decode_batch(body)


def enrol_key(url: str, token: str, device_id: str, key_file: Path) -> None:
    """A new device key in `key_file` (0600), enrolled through edgectl's receiver client."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.keyfile import write_private_key
    from provisioning.client import Receiver

    key = Ed25519PrivateKey.generate()
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_key(key_file, key)
    with Receiver(url) as receiver:
        receiver.enroll(key, token, device_id)


def write_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.keyfile import write_private_key

    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_key(path, key)
    return key


def _toml_table(values: dict[str, Any]) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v + '"'
        return str(v)

    return "".join(f"{k} = {value(v)}\n" for k, v in values.items())


def write_config(
    directory: Path,
    *,
    url: str,
    device_id: str = "gw-test",
    cloud: dict[str, Any] | None = None,
    buffer: dict[str, Any] | None = None,
    sources: str = '[[sources]]\ntype = "test"\nrate_hz = 50\nseries = 3\n',
    clock: str = 'sync_check = "assume_synced"\n',
    metrics: str = 'listen = ""\n',
) -> Path:
    """An agent.toml in `directory` with the key at keys/device.key (not created here)."""
    cloud_t = {"url": url, "batch_interval_ms": 100, "retry_initial_ms": 20, "retry_max_s": 0.5}
    buffer_t = {"path": "data/buffer.db", "flush_interval_ms": 50}
    path = directory / "agent.toml"
    path.write_text(
        f'[device]\nid = "{device_id}"\nkey_file = "keys/device.key"\n\n'
        f"[cloud]\n{_toml_table(cloud_t | (cloud or {}))}\n"
        f"[buffer]\n{_toml_table(buffer_t | (buffer or {}))}\n"
        f"{sources}\n[metrics]\n{metrics}\n[clock]\n{clock}",
        encoding="utf-8",
    )
    return path
