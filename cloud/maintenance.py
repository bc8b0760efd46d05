"""The receiver's maintenance task: `Store.maintain` at start-up and then every interval.

PostgreSQL partitions are created months ahead, so a missed round (the database was down, the
lock was held by another receiver) costs nothing; readings outside every partition land in the
default partition and move to their own when it is created. Retention is best effort in the
same way. Run in one process of a receiver (worker 1 of `--workers N`); receivers on several
machines may all run it, the store's advisory lock makes one round run at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cloud.errors import StoreError
from cloud.storage.retention import Retention
from cloud.storage.store import Store

log = logging.getLogger("cloud.maintenance")
INTERVAL_S = 3600.0


async def maintenance_loop(
    store: Store,
    retention: Retention,
    *,
    now_ms: Callable[[], int],
    interval_s: float = INTERVAL_S,
) -> None:
    """Forever (cancel to stop): one maintenance round, then wait `interval_s`."""
    while True:
        try:
            report = await store.maintain(now_ms(), retention)
        except StoreError as exc:
            log.warning("maintenance failed, retried in %g s: %s", interval_s, exc)
        else:
            if report.partitions_created or report.partitions_dropped or report.rows_deleted:
                log.info(
                    "maintenance: partitions created %s, dropped %s; %d old readings deleted",
                    report.partitions_created or "none",
                    report.partitions_dropped or "none",
                    report.rows_deleted,
                )
        await asyncio.sleep(interval_s)
