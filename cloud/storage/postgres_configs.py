"""The PostgreSQL store's config tables (`cloud.storage.configs`)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from cloud.errors import IntegrityError
from cloud.storage import configs_sql
from cloud.storage.configs import ConfigAudit, DesiredConfig, Signer
from cloud.storage.postgres_db import PH, PostgresDb, translate
from cloud.storage.sqlite_configs import desired


class PostgresConfigs(PostgresDb):
    """`ConfigStore` on PostgreSQL."""

    async def push_config(
        self,
        devices: Sequence[str],
        body: bytes,
        sha256: str,
        sign: Signer,
        *,
        at_ms: int,
        actor: str,
        target: str,
    ) -> list[tuple[str, int]]:
        out = []
        async with self._pool.connection() as conn, conn.transaction():
            with translate():
                for device in sorted(devices):  # one lock order: pushes never deadlock
                    cur = await conn.execute(
                        "SELECT 1 FROM device WHERE id = %s FOR UPDATE", (device,)
                    )
                    if await cur.fetchone() is None:
                        raise IntegrityError(f"device {device!r} is not registered")
                    cur = await conn.execute(configs_sql.NEXT_VERSION.format(p=PH), (device,))
                    row = await cur.fetchone()
                    version = int(row[0]) if row else 1
                    values = (device, version, sha256, body, sign(device, version), at_ms, actor)
                    try:
                        await conn.execute(configs_sql.INSERT.format(p=PH), values)
                    except psycopg.errors.ForeignKeyViolation as exc:  # pragma: no cover - locked
                        raise IntegrityError(f"device {device!r} is not registered") from exc
                    out.append((device, version))
                await conn.execute(
                    configs_sql.INSERT_AUDIT.format(p=PH), (at_ms, actor, target, sha256, len(out))
                )
        order = {d: i for i, d in enumerate(devices)}
        return sorted(out, key=lambda dv: order[dv[0]])

    async def desired_config(self, device_id: str) -> DesiredConfig | None:
        rows = await self._fetchall(configs_sql.DESIRED_ONE.format(p=PH), (device_id,))
        return desired(rows[0]) if rows else None

    async def desired_configs(self) -> list[DesiredConfig]:
        return [desired(r) for r in await self._fetchall(configs_sql.DESIRED_ALL)]

    async def config_audit(self, limit: int) -> list[ConfigAudit]:
        rows = await self._fetchall(configs_sql.AUDIT.format(p=PH), (limit,))
        return [ConfigAudit(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    async def devices_with_tag(self, tag: str, value: str) -> list[str]:
        rows = await self._fetchall(configs_sql.devices_with_tag(tag).format(p=PH), (value,))
        return [str(r[0]) for r in rows]
