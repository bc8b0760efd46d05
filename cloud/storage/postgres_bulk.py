"""Enrolled devices written straight into a migrated PostgreSQL schema, for the fleet bench.

`bulk_enroll` is what 10,000 enrolments through the API would leave behind (an active device at
the genesis head with one active key), in one transaction with COPY, in about a second. Used by
`bench/fleet.py` only: a real enrolment goes through a token (`cloud.receiver.enroll`).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from cloud.errors import StoreError
from wire.models import GENESIS


async def bulk_enroll(dsn: str, devices: Sequence[tuple[str, str, bytes]], now_ms: int) -> int:
    """(device_id, keyid, raw public key) per device; the number written."""
    try:
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
            cur = conn.cursor()
            async with cur.copy(
                "COPY device (id, status, head_digest, created_ms) FROM STDIN"
            ) as cp:
                for device_id, _, _ in devices:
                    await cp.write_row((device_id, "active", GENESIS, now_ms))
            async with cur.copy(
                "COPY device_key (keyid, device_id, public_key, status, created_ms) FROM STDIN"
            ) as cp:
                for device_id, keyid, public_key in devices:
                    await cp.write_row((keyid, device_id, public_key, "active", now_ms))
    except psycopg.Error as exc:
        raise StoreError(f"postgres: bulk enrolment failed: {exc}") from exc
    return len(devices)
