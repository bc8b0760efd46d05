"""The SQLite store's config tables (`cloud.storage.configs`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from cloud.errors import IntegrityError
from cloud.storage import configs_sql
from cloud.storage.configs import ConfigAudit, DesiredConfig, Signer
from cloud.storage.sqlite_db import PH, Conn, SqliteDb


def desired(r: Sequence[Any]) -> DesiredConfig:
    return DesiredConfig(str(r[0]), int(r[1]), str(r[2]), bytes(r[3]), str(r[4]), int(r[5]), r[6])


class SqliteConfigs(SqliteDb):
    """`ConfigStore` on SQLite."""

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
        def push(conn: Conn) -> list[tuple[str, int]]:
            out = []
            for device in devices:
                version = int(
                    conn.execute(configs_sql.NEXT_VERSION.format(p=PH), (device,)).fetchone()[0]
                )
                row = (device, version, sha256, body, sign(device, version), at_ms, actor)
                try:
                    conn.execute(configs_sql.INSERT.format(p=PH), row)
                except sqlite3.IntegrityError as exc:
                    raise IntegrityError(f"device {device!r} is not registered") from exc
                out.append((device, version))
            conn.execute(
                configs_sql.INSERT_AUDIT.format(p=PH), (at_ms, actor, target, sha256, len(out))
            )
            return out

        return await self._write(lambda c: self._tx(c, lambda: push(c)))

    async def desired_config(self, device_id: str) -> DesiredConfig | None:
        rows = await self._fetch_rows(configs_sql.DESIRED_ONE.format(p=PH), (device_id,))
        return desired(rows[0]) if rows else None

    async def desired_configs(self) -> list[DesiredConfig]:
        return [desired(r) for r in await self._fetch_rows(configs_sql.DESIRED_ALL, ())]

    async def config_audit(self, limit: int) -> list[ConfigAudit]:
        rows = await self._fetch_rows(configs_sql.AUDIT.format(p=PH), (limit,))
        return [ConfigAudit(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    async def devices_with_tag(self, tag: str, value: str) -> list[str]:
        rows = await self._fetch_rows(configs_sql.devices_with_tag(tag).format(p=PH), (value,))
        return [str(r[0]) for r in rows]
