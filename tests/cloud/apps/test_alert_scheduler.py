"""The alert scheduler's pass in-process on both stores, and a pass that fails does not end it
(the real `edge-cloud serve` runs are tests/e2e/test_alert_scheduler.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest

from cloud.apps.alert_scheduler import AlertScheduler, Counts
from cloud.apps.intensity import PlantConfig
from cloud.storage.sqlite import SqliteStore
from cloud.storage.store import Store
from tests.e2e.test_alert_scheduler import plant_silence


def scheduler(store: Store, interval_s: float = 300.0) -> AlertScheduler:
    return AlertScheduler(
        store,
        store,
        PlantConfig(()),
        None,
        interval_s=interval_s,
        now_ms=lambda: int(time.time() * 1000),
    )


async def test_a_pass_opens_once_and_keeps_an_email_without_smtp(store: Store) -> None:
    await plant_silence(store)
    s = scheduler(store)
    async with httpx.AsyncClient() as client:
        # no SMTP server configured: the email waits in the outbox, retried with backoff
        assert await s.run_once(client) == Counts(findings=1, opened=1, delivered=0, failed=1)
        assert await s.run_once(client) == Counts(findings=1, opened=0, delivered=0, failed=0)
    (alert,) = await store.list_alerts()
    assert (alert.kind, alert.subject, alert.occurrences) == ("silent", "gw-quiet", 2)


class Failures(logging.Handler):
    """Counts the scheduler's failed passes; `enough` is set at the third."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.enough = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "pass failed" in record.getMessage():
            self.count += 1
            if self.count >= 3:
                self.enough.set()


async def test_failing_passes_are_logged_and_the_scheduler_goes_on(tmp_path: Path) -> None:
    failures = Failures()
    log = logging.getLogger("cloud.alerts")
    log.addHandler(failures)
    store = SqliteStore(str(tmp_path / "cloud.db"))
    await store.open()
    await store.migrate()
    await store.close()  # every pass now fails
    task = asyncio.create_task(scheduler(store, interval_s=0.01).run(), name="scheduler")
    try:
        async with asyncio.timeout(30):
            await failures.enough.wait()
        assert not task.done()
    finally:
        log.removeHandler(failures)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
