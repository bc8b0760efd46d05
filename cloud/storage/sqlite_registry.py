"""The SQLite store's registry: enrolment tokens, devices, keys, rotation and revocation."""

from __future__ import annotations

from cloud.storage import chain, queries
from cloud.storage.devices import ChainEvent, ChainHead, DeviceState, DeviceStatus, KeyStatus
from cloud.storage.registry import EnrollRequest, RotateResult, TokenRecord
from cloud.storage.rows import device_state, key_record
from cloud.storage.sqlite_db import PH, Conn, SqliteDb
from wire.models import GENESIS


class SqliteRegistry(SqliteDb):
    """`RegistryStore` on SQLite."""

    async def create_token(self, token: TokenRecord) -> None:
        def create(conn: Conn) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO device (id, status, head_digest, created_ms)"
                " VALUES (?, 'pending', ?, ?)",
                (token.device_id, GENESIS, token.created_ms),
            )
            conn.execute(
                "INSERT INTO enroll_token (id, token_hash, device_id, created_ms, expires_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    token.token_id,
                    token.token_hash,
                    token.device_id,
                    token.created_ms,
                    token.expires_ms,
                ),
            )

        await self._write(lambda c: self._tx(c, lambda: create(c)))

    async def enroll(self, request: EnrollRequest, *, max_failures: int) -> ChainHead | None:
        def enroll(conn: Conn) -> ChainHead | None:
            row = conn.execute(
                "SELECT token_hash, device_id, expires_ms, used_ms, used_by_keyid,"
                " failed_attempts FROM enroll_token WHERE id = ?",
                (request.token_id,),
            ).fetchone()
            if row is None:
                return None
            verdict = chain.judge_token(
                chain.StoredToken(bytes(row[0]), row[1], row[2], row[3], row[4], row[5]),
                token_hash=request.token_hash,
                device_id=request.device_id,
                keyid=request.keyid,
                now_ms=request.now_ms,
                max_failures=max_failures,
            )
            if verdict is chain.TokenVerdict.FAIL:
                conn.execute(
                    "UPDATE enroll_token SET failed_attempts = failed_attempts + 1 WHERE id = ?",
                    (request.token_id,),
                )
                return None
            if verdict is chain.TokenVerdict.REFUSE:
                return None
            if verdict is chain.TokenVerdict.CONSUME:
                owner = conn.execute(
                    "SELECT device_id FROM device_key WHERE keyid = ?", (request.keyid,)
                ).fetchone()
                if owner is not None:  # a key enrols once, for one device
                    return None
                conn.execute(
                    "UPDATE enroll_token SET used_ms = ?, used_by_keyid = ? WHERE id = ?",
                    (request.now_ms, request.keyid, request.token_id),
                )
                conn.execute(
                    "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                    " VALUES (?, ?, ?, 'active', ?)",
                    (request.keyid, request.device_id, request.public_key, request.now_ms),
                )
                conn.execute(
                    "UPDATE device SET status = 'active' WHERE id = ? AND status = 'pending'",
                    (request.device_id,),
                )
            head = conn.execute(
                "SELECT head_seq, head_digest FROM device WHERE id = ?", (request.device_id,)
            ).fetchone()
            return ChainHead(request.device_id, int(head[0]), bytes(head[1]))

        return await self._write(lambda c: self._tx(c, lambda: enroll(c)))

    async def rotate_key(
        self,
        device_id: str,
        old_keyid: str,
        new_keyid: str,
        new_public_key: bytes,
        *,
        now_ms: int,
        overlap_ms: int,
    ) -> RotateResult | None:
        def rotate(conn: Conn) -> RotateResult | None:
            old = conn.execute(
                "SELECT device_id, status, not_after_ms FROM device_key WHERE keyid = ?",
                (old_keyid,),
            ).fetchone()
            if old is None or old[0] != device_id:
                return None
            new = conn.execute(
                "SELECT device_id, status FROM device_key WHERE keyid = ?", (new_keyid,)
            ).fetchone()
            if new is not None:  # a retry of a rotation that already happened
                if new[0] != device_id or new[1] == KeyStatus.REVOKED or old[2] is None:
                    return None
                return RotateResult(new_keyid, old_keyid, int(old[2]))
            if old[1] != KeyStatus.ACTIVE:
                return None
            not_after = now_ms + overlap_ms
            conn.execute(
                "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                " VALUES (?, ?, ?, 'active', ?)",
                (new_keyid, device_id, new_public_key, now_ms),
            )
            conn.execute(
                "UPDATE device_key SET status = 'retiring', not_after_ms = ? WHERE keyid = ?",
                (not_after, old_keyid),
            )
            return RotateResult(new_keyid, old_keyid, not_after)

        return await self._write(lambda c: self._tx(c, lambda: rotate(c)))

    async def get_device(self, device_id: str) -> DeviceState | None:
        def get(conn: Conn) -> DeviceState | None:
            row = conn.execute(queries.fmt(queries.SELECT_DEVICE, PH), (device_id,)).fetchone()
            if row is None:
                return None
            keys = conn.execute(
                queries.fmt(queries.SELECT_DEVICE_KEYS, PH), (device_id,)
            ).fetchall()
            events = conn.execute(
                "SELECT kind, seq, expected_seq, reason, at_ms FROM chain_event"
                " WHERE device_id = ? ORDER BY id DESC LIMIT 50",
                (device_id,),
            ).fetchall()
            return device_state(
                row,
                keys=tuple(key_record(k) for k in keys),
                chain_events=tuple(ChainEvent(*e) for e in events),
            )

        return await self._read(get)

    async def set_device_status(self, device_id: str, status: DeviceStatus) -> bool:
        def update(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE device SET status = ? WHERE id = ? AND status != 'pending'",
                (str(status), device_id),
            )
            return cur.rowcount == 1

        return await self._write(update)

    async def revoke_key(self, keyid: str, now_ms: int) -> bool:
        def update(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE device_key SET status = 'revoked', revoked_ms = ?"
                " WHERE keyid = ? AND status != 'revoked'",
                (now_ms, keyid),
            )
            return cur.rowcount == 1

        return await self._write(update)

    async def revoke_device_keys(self, device_id: str, now_ms: int) -> int:
        def update(conn: Conn) -> int:
            cur = conn.execute(
                "UPDATE device_key SET status = 'revoked', revoked_ms = ?"
                " WHERE device_id = ? AND status != 'revoked'",
                (now_ms, device_id),
            )
            return cur.rowcount

        return await self._write(update)
