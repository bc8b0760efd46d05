"""The PostgreSQL store's registry: enrolment tokens, devices, keys, rotation and revocation."""

from __future__ import annotations

from cloud.errors import IntegrityError
from cloud.storage import chain, queries
from cloud.storage.devices import ChainEvent, ChainHead, DeviceState, DeviceStatus, KeyStatus
from cloud.storage.postgres_db import PH, PostgresDb, translate
from cloud.storage.registry import EnrollRequest, RotateResult, TokenRecord
from cloud.storage.rows import device_state, key_record
from wire.models import GENESIS


class PostgresRegistry(PostgresDb):
    """`RegistryStore` on PostgreSQL."""

    async def create_token(self, token: TokenRecord) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            with translate():
                await conn.execute(
                    "INSERT INTO device (id, status, head_digest, created_ms)"
                    " VALUES (%s, 'pending', %s, %s) ON CONFLICT (id) DO NOTHING",
                    (token.device_id, GENESIS, token.created_ms),
                )
                await conn.execute(
                    "INSERT INTO enroll_token (id, token_hash, device_id, created_ms, expires_ms)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (
                        token.token_id,
                        token.token_hash,
                        token.device_id,
                        token.created_ms,
                        token.expires_ms,
                    ),
                )

    async def enroll(self, request: EnrollRequest, *, max_failures: int) -> ChainHead | None:
        async with self._pool.connection() as conn, conn.transaction():
            with translate():
                cur = await conn.execute(
                    "SELECT token_hash, device_id, expires_ms, used_ms, used_by_keyid,"
                    " failed_attempts FROM enroll_token WHERE id = %s FOR UPDATE",
                    (request.token_id,),
                )
                row = await cur.fetchone()
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
                    await conn.execute(
                        "UPDATE enroll_token SET failed_attempts = failed_attempts + 1"
                        " WHERE id = %s",
                        (request.token_id,),
                    )
                    return None
                if verdict is chain.TokenVerdict.REFUSE:
                    return None
                if verdict is chain.TokenVerdict.CONSUME:
                    cur = await conn.execute(
                        "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                        " VALUES (%s, %s, %s, 'active', %s) ON CONFLICT (keyid) DO NOTHING",
                        (request.keyid, request.device_id, request.public_key, request.now_ms),
                    )
                    if cur.rowcount != 1:  # a key enrols once, for one device
                        return None
                    await conn.execute(
                        "UPDATE enroll_token SET used_ms = %s, used_by_keyid = %s WHERE id = %s",
                        (request.now_ms, request.keyid, request.token_id),
                    )
                    await conn.execute(
                        "UPDATE device SET status = 'active' WHERE id = %s AND status = 'pending'",
                        (request.device_id,),
                    )
                cur = await conn.execute(
                    "SELECT head_seq, head_digest FROM device WHERE id = %s", (request.device_id,)
                )
                head = await cur.fetchone()
                if head is None:  # pragma: no cover - the token's foreign key forbids it
                    raise IntegrityError("token names a device that does not exist")
                return ChainHead(request.device_id, int(head[0]), bytes(head[1]))

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
        async with self._pool.connection() as conn, conn.transaction():
            with translate():
                await conn.execute("SELECT 1 FROM device WHERE id = %s FOR UPDATE", (device_id,))
                cur = await conn.execute(
                    "SELECT device_id, status, not_after_ms FROM device_key WHERE keyid = %s",
                    (old_keyid,),
                )
                old = await cur.fetchone()
                if old is None or old[0] != device_id:
                    return None
                cur = await conn.execute(
                    "SELECT device_id, status FROM device_key WHERE keyid = %s", (new_keyid,)
                )
                new = await cur.fetchone()
                if new is not None:  # a retry of a rotation that already happened
                    if new[0] != device_id or new[1] == KeyStatus.REVOKED or old[2] is None:
                        return None
                    return RotateResult(new_keyid, old_keyid, int(old[2]))
                if old[1] != KeyStatus.ACTIVE:
                    return None
                not_after = now_ms + overlap_ms
                await conn.execute(
                    "INSERT INTO device_key (keyid, device_id, public_key, status, created_ms)"
                    " VALUES (%s, %s, %s, 'active', %s)",
                    (new_keyid, device_id, new_public_key, now_ms),
                )
                await conn.execute(
                    "UPDATE device_key SET status = 'retiring', not_after_ms = %s WHERE keyid = %s",
                    (not_after, old_keyid),
                )
                return RotateResult(new_keyid, old_keyid, not_after)

    async def get_device(self, device_id: str) -> DeviceState | None:
        row = await self._fetchone(queries.fmt(queries.SELECT_DEVICE, PH), (device_id,))
        if row is None:
            return None
        keys = await self._fetchall(queries.fmt(queries.SELECT_DEVICE_KEYS, PH), (device_id,))
        events = await self._fetchall(
            "SELECT kind, seq, expected_seq, reason, at_ms FROM chain_event"
            " WHERE device_id = %s ORDER BY id DESC LIMIT 50",
            (device_id,),
        )
        return device_state(
            row,
            keys=tuple(key_record(k) for k in keys),
            chain_events=tuple(ChainEvent(*e) for e in events),
        )

    async def set_device_status(self, device_id: str, status: DeviceStatus) -> bool:
        n = await self._rowcount(
            "UPDATE device SET status = %s WHERE id = %s AND status != 'pending'",
            (str(status), device_id),
        )
        return n == 1

    async def revoke_key(self, keyid: str, now_ms: int) -> bool:
        # The device row is locked first, as the batch transaction locks it: a revocation waits
        # for a batch in flight, and no batch commits with this key once it returns.
        n = await self._rowcount(
            "WITH locked AS (SELECT d.id FROM device d JOIN device_key k ON k.device_id = d.id"
            " WHERE k.keyid = %s FOR UPDATE OF d)"
            " UPDATE device_key SET status = 'revoked', revoked_ms = %s FROM locked"
            " WHERE device_key.keyid = %s AND device_key.device_id = locked.id"
            " AND device_key.status != 'revoked'",
            (keyid, now_ms, keyid),
        )
        return n == 1

    async def revoke_device_keys(self, device_id: str, now_ms: int) -> int:
        return await self._rowcount(  # the device row first, as in `revoke_key`
            "WITH locked AS (SELECT id FROM device WHERE id = %s FOR UPDATE)"
            " UPDATE device_key SET status = 'revoked', revoked_ms = %s FROM locked"
            " WHERE device_key.device_id = locked.id AND device_key.status != 'revoked'",
            (device_id, now_ms),
        )
