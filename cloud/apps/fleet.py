"""The fleet view: every gateway with what its health reports say about it (docs/fleet.md).

Pure: built from the device records and the health reports the store holds
(`ReadStore.list_devices`, `latest_health`, `health_history`); the dashboard's fleet page renders
it (`cloud.apps.fleet_page`). A gateway is flagged

- **silent** when neither a report nor a batch came for `SILENT_MS`;
- **behind** when the oldest reading it holds is older than `BEHIND_S`;
- **dropping** when its drop totals grew across the reports the receiver keeps (about the last
  100 reports: at the default interval, the last 100 minutes);
- **old config** when its config version is not the one most of the fleet runs (until
  configuration is pushed from the cloud, the fleet's majority is the best guess of "current");
- **sources down** when one of its sources (or a unit of one) is down.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from cloud.storage.devices import DeviceState
from cloud.storage.reads import ReadStore
from wire.http import HealthReport

SILENT_MS = 5 * 60_000
BEHIND_S = 5 * 60.0
HISTORY = 100


@dataclass(frozen=True, slots=True)
class Gateway:
    device_id: str
    status: str
    last_contact_ms: int | None  # the newest of its last report and its last batch
    received_ms: int | None  # its last report
    report: HealthReport | None
    flags: tuple[str, ...]
    drops_recent: int  # drops counted across the kept reports


@dataclass(frozen=True, slots=True)
class Fleet:
    now_ms: int
    gateways: list[Gateway]
    current_config: str | None  # the fleet's majority
    counts: dict[str, int] = field(default_factory=dict)  # flag -> gateways with it


FLAGS = ("silent", "behind", "dropping", "old config", "sources down")


def _drops(report: HealthReport) -> int:
    return sum(report.drops.values())


def classify(
    device: DeviceState,
    received_ms: int | None,
    report: HealthReport | None,
    oldest: HealthReport | None,
    *,
    now_ms: int,
    current_config: str | None,
) -> Gateway:
    """One gateway's flags (`FLAGS`); `oldest` is the oldest report the receiver keeps."""
    contacts = [t for t in (received_ms, device.last_seen_ms) if t is not None]
    last = max(contacts) if contacts else None
    flags: list[str] = []
    if last is None or now_ms - last > SILENT_MS:
        flags.append("silent")
    recent = 0
    if report is not None:
        age = report.backlog.oldest_age_s
        if age is not None and age > BEHIND_S:
            flags.append("behind")
        recent = _drops(report) - _drops(oldest) if oldest is not None else 0
        if recent > 0:
            flags.append("dropping")
        if current_config is not None and report.config_version != current_config:
            flags.append("old config")
        if any(s.state == "down" or s.parts_down for s in report.sources):
            flags.append("sources down")
    return Gateway(
        device_id=device.device_id,
        status=str(device.status),
        last_contact_ms=last,
        received_ms=received_ms,
        report=report,
        flags=tuple(flags),
        drops_recent=recent,
    )


def _decode(body: bytes) -> HealthReport | None:
    try:
        return msgspec.json.decode(body, type=HealthReport)
    except msgspec.DecodeError:
        return None


def majority(reports: Sequence[HealthReport]) -> str | None:
    """The config version most gateways run (ties: the smallest, so the choice is stable)."""
    counted = Counter(r.config_version for r in reports)
    if not counted:
        return None
    top = max(counted.values())
    return min(v for v, n in counted.items() if n == top)


async def fleet(reads: ReadStore, now_ms: int) -> Fleet:
    """Every enrolled gateway (pending ones have never spoken), worst first, then by name."""
    devices = [d for d in await reads.list_devices() if str(d.status) != "pending"]
    latest = {r.device_id: r for r in await reads.latest_health()}
    reports = {d: rep for d, r in latest.items() if (rep := _decode(r.body)) is not None}
    current = majority(list(reports.values()))
    gateways = []
    for device in devices:
        report = reports.get(device.device_id)
        oldest = None
        if report is not None:
            history = await reads.health_history(device.device_id, HISTORY)
            oldest = _decode(history[-1].body) if history else None
        record = latest.get(device.device_id)
        gateways.append(
            classify(
                device,
                record.received_ms if record is not None else None,
                report,
                oldest,
                now_ms=now_ms,
                current_config=current,
            )
        )
    gateways.sort(key=lambda g: (-len(g.flags), g.device_id))
    counts = {flag: sum(flag in g.flags for g in gateways) for flag in FLAGS}
    return Fleet(now_ms=now_ms, gateways=gateways, current_config=current, counts=counts)
