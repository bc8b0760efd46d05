"""The alert scheduler inside `edge-cloud serve`: every `interval_s` it evaluates the efficiency
findings of the last 30 days into alerts (`raise_findings`) and drains the outbox (`Sender`),
then logs one line with the counts. docs/alerts.md, "The scheduler".

Several receivers on one PostgreSQL may each run it: evaluation opens at most one live alert per
group (the store's per-group lock), and delivery claims each outbox item for one sender
(`cloud.storage.alerts`), so an alert is delivered once whichever receiver runs first. A pass
that fails (the store unreachable, or anything unexpected, logged with its traceback) is
retried at the next interval; the receiver keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import httpx

from cloud.apps import efficiency
from cloud.apps.alert_delivery import Sender, SmtpConfig, load_rules, raise_findings
from cloud.apps.figures import local_day
from cloud.apps.intensity import PlantConfig
from cloud.errors import CloudError
from cloud.storage.alerts import AlertStore
from cloud.storage.reads import ReadStore

DAY_MS = 24 * 3600 * 1000
WINDOW_DAYS = 30
DELIVERY_TIMEOUT_S = 10.0
log = logging.getLogger("cloud.alerts")


async def evaluate(
    reads: ReadStore, store: AlertStore, plant: PlantConfig, now_ms: int
) -> tuple[int, list[int]]:
    """(findings of the last 30 whole local days up to now, ids of the alerts they opened)."""
    # whole local days, so each day's row is the whole day
    from_ms = local_day(now_ms - WINDOW_DAYS * DAY_MS, ZoneInfo(plant.tz))[0]
    config = await efficiency.plant_for(reads, plant, from_ms, now_ms + 1)
    report = await efficiency.load(
        reads, config, from_ms=from_ms, to_ms=now_ms + 1, until_ms=now_ms + 1
    )
    opened = await raise_findings(store, await load_rules(store), report.findings, now_ms)
    return len(report.findings), opened


@dataclass(frozen=True, slots=True)
class Counts:
    findings: int
    opened: int
    delivered: int
    failed: int


class AlertScheduler:
    def __init__(
        self,
        reads: ReadStore,
        store: AlertStore,
        plant: PlantConfig,
        smtp: SmtpConfig | None,
        *,
        interval_s: float,
        now_ms: Callable[[], int],
    ) -> None:
        self.reads, self.store, self.plant, self.smtp = reads, store, plant, smtp
        self.interval_s, self.now_ms = interval_s, now_ms

    async def run_once(self, client: httpx.AsyncClient) -> Counts:
        findings, opened = await evaluate(self.reads, self.store, self.plant, self.now_ms())
        sender = Sender(self.store, client, self.smtp)
        delivered, failed = await sender.run_once(self.now_ms())
        return Counts(findings, len(opened), delivered, failed)

    async def run(self) -> None:
        """Passes forever, the first at once; cancel to stop."""
        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_S) as client:
            while True:
                try:
                    c = await self.run_once(client)
                except CloudError as exc:
                    log.warning("alerts: pass failed, retried in %g s: %s", self.interval_s, exc)
                except Exception:  # a bug in a pass must not stop the receiver serving
                    log.exception("alerts: pass failed, retried in %g s", self.interval_s)
                else:
                    log.info(
                        "alerts: %d findings, %d alerts opened, %d delivered, %d failed",
                        c.findings,
                        c.opened,
                        c.delivered,
                        c.failed,
                    )
                await asyncio.sleep(self.interval_s)
