"""edgectl's device table and detail with a gateway's health report."""

from __future__ import annotations

import msgspec

from provisioning.views import device_detail, device_table
from wire.admin import DeviceClock, DeviceDrops, DeviceRecord
from wire.http import Backlog, DeviceHealth, HealthReport, SourceHealth

NOW = 1_790_000_600_000


def record(device_id: str, health: DeviceHealth | None) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        status="active",
        head_seq=7,
        head_digest="",
        created_ms=NOW - 86_400_000,
        last_seen_ms=NOW - 5_000,
        last_boot_id=None,
        batches=7,
        readings=700,
        dropped=DeviceDrops(buffer_full=0, damaged=0, rejected_invalid=0),
        clock=DeviceClock(state=0, offset_ms=0, created_skew_ms=None),
        gaps=0,
        forks=0,
        health=msgspec.UNSET if health is None else health,
    )


def health(device_id: str) -> DeviceHealth:
    report = HealthReport(
        device_id=device_id,
        reported_ms=NOW - 10_000,
        agent_version="0.1.0",
        config_version="0123456789abcdef",
        started_ms=NOW - 3_600_000,
        uptime_s=3600.0,
        restarts=4,
        backlog=Backlog(readings=1234, bytes=65536, oldest_age_s=300.0),
        drops={"buffer_full": 9, "damaged": 0, "rejected_invalid": 0},
        clock_state=0,
        uplink="retrying",
        sources=[
            SourceHealth(name="meters", state="up", parts_down=["meter-2"]),
            SourceHealth(
                name="scale",
                state="down",
                down_since_ms=NOW - 120_000,
                reason="port_lost",
                detail="/dev/ttyUSB0: gone",
                outages=3,
                errors={"timeouts": 2},
            ),
        ],
    )
    return DeviceHealth(device_id=device_id, received_ms=NOW - 10_000, report=report)


def test_the_table_shows_health_and_a_dash_before_the_first_report() -> None:
    table = device_table([record("gw-1", health("gw-1")), record("gw-2", None)], NOW)
    header, gw1, gw2 = table.splitlines()
    assert header.split()[-4:] == ["HEALTH", "BACKLOG", "SOURCES", "CONFIG"]
    cells = ["10", "s", "ago", "1234", "(5", "min)", "1/2", "down", "01234567"]
    assert gw1.split()[-9:] == cells
    assert gw2.split()[-4:] == ["-", "-", "-", "-"]


def test_the_detail_says_what_is_down_since_when_and_why() -> None:
    text = device_detail(record("gw-1", health("gw-1")), NOW)
    assert "health:       " in text
    assert "0.1.0, config 0123456789abcdef, up 1 h, 4 restart(s)" in text
    assert "backlog:      1234 readings, 65536 bytes, oldest 5 min" in text
    assert "agent drops:  buffer_full 9" in text
    assert "source:       meters: up, parts down: meter-2, 0 outage(s)" in text
    assert "source:       scale: down since" in text
    assert "(port_lost: /dev/ttyUSB0: gone), 3 outage(s), errors: timeouts 2" in text
    assert "health:       no report yet" in device_detail(record("gw-2", None), NOW)
