"""Weighbridge tickets from real scale formats: the ASCII source with a ticket builder against
simulated MT-SICS, Toledo continuous and A&D instruments on real pseudo-terminals, and the
tickets it makes counted by the materials figure as the demo's are."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from agent.sources import HostStamper
from agent.sources.ascii import AsciiSource
from cloud.apps.figures import materials_received
from cloud.storage.reads import EventRecord
from firmware_bridge.ascii_protocol import AsciiConfig
from firmware_bridge.errors import ConfigError
from firmware_bridge.port import PtyDevice
from firmware_bridge.sim.scales import ScaleSim
from tests.agent.sources.conftest import Recorder
from tests.firmware_bridge.conftest import running, wait_until
from wire.models import Quality

pytestmark = pytest.mark.serial


def config(link: Path, preset: str, **kw: object) -> AsciiConfig:
    raw = {
        "name": "bridge-1",
        "port": {"path": str(link)},
        "preset": preset,
        "poll_interval_ms": 50,
        "answer_timeout_ms": 200,
        "reopen_initial_ms": 50,
        "ticket": {"threshold": 500.0, "material": "SAND"},
        **kw,
    }
    return msgspec.convert(raw, AsciiConfig)


async def drive(scale: ScaleSim, steps: list[tuple[float, bool, float]], frames: int = 4) -> None:
    """Put each (weight, stable, tare) on the scale for `frames` frames or answers."""
    for weight, stable, tare in steps:
        scale.weight, scale.stable, scale.tare = weight, stable, tare
        sent = scale.sent
        await wait_until(lambda sent=sent: scale.sent >= sent + frames)  # type: ignore[misc]


def truck(gross: float, tare: float = 0.0) -> list[tuple[float, bool, float]]:
    return [(0.0, True, 0.0), (gross * 0.4, False, tare), (gross, False, tare)] + [
        (gross, True, tare)
    ] * 3


def tickets(sink: Recorder) -> list[dict[str, object]]:
    return [dict(e.attrs) for e in sink.events if e.kind == "weighbridge_ticket"]


def received(sink: Recorder) -> dict[str, float]:
    """What "Material received" shows for these tickets (cloud.apps.figures)."""
    records = [
        EventRecord("gw-1", n, e.kind, e.ts_ms, e.quality, dict(e.attrs))
        for n, e in enumerate(sink.events)
    ]
    t0 = min(e.ts_ms for e in sink.events) - 1
    report = materials_received(records, [t0, t0 + 86_400_000])
    return {m.material: m.total_kg for m in report.materials}


async def test_streaming_mt_sics_scale_makes_one_ticket_per_truck(links: Path) -> None:
    link = links / "bridge"
    device = PtyDevice(str(link))
    scale = ScaleSim(device, "mt-sics", unit="kg")
    sink = Recorder()
    source = AsciiSource(config(link, "mt-sics", mode="streaming"), clock=HostStamper())
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await wait_until(lambda: scale.streaming)
        await drive(scale, truck(24_180.0) + truck(18_020.0) + [(0.0, True, 0.0)])
    device.close()
    assert [(t["material"], t["net_kg"]) for t in tickets(sink)] == [
        ("SAND", 24_180.0),
        ("SAND", 18_020.0),
    ]
    assert received(sink) == {"SAND": 42_200.0}  # no longer 0 t with a real scale
    assert source.stats.tickets == 2


async def test_toledo_continuous_checksum_decimal_point_and_tare(links: Path) -> None:
    link = links / "bridge"
    device = PtyDevice(str(link))
    scale = ScaleSim(device, "toledo-continuous", streaming=True, decimals=1, corrupt_checksum=True)
    sink = Recorder()
    cfg = config(
        link,
        "toledo-continuous",
        mode="streaming",
        ticket={"threshold": 500.0, "material": "CLINKER", "tare_metric": "tare"},
    )
    source = AsciiSource(cfg, clock=HostStamper())
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await drive(scale, [(1234.5, True, 0.0)], frames=29)  # the field report's 29 frames
        await wait_until(lambda: source.stats.bad_frames >= 29)  # sent is not yet read
        assert sink.readings == []  # none of them stored
        scale.corrupt_checksum = False
        await drive(scale, truck(24_180.5, tare=11_000.0) + [(0.0, True, 0.0)])
    device.close()
    weights = [r.value for r in sink.readings if r.series.metric == "weight"]
    assert 24_180.5 in weights  # the decimal point of status word A applied
    assert 241_805.0 not in weights
    assert {r.series.unit for r in sink.readings} == {"kg"}
    (ticket,) = tickets(sink)
    assert (ticket["gross_kg"], ticket["tare_kg"], ticket["net_kg"]) == (
        24_180.5,
        11_000.0,
        13_180.5,
    )
    assert received(sink) == {"CLINKER": 13_180.5}


async def test_polled_and_indicator_weighs_on_q(links: Path) -> None:
    link = links / "bridge"
    device = PtyDevice(str(link))
    scale = ScaleSim(device, "and", unit="kg", decimals=0)
    sink = Recorder()
    source = AsciiSource(config(link, "and", mode="polled"), clock=HostStamper())
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await drive(scale, truck(30_000.0) + [(0.0, True, 0.0)])
        scale.weight = None  # out of range
        await wait_until(lambda: any(r.quality == Quality.BAD for r in sink.readings))
    device.close()
    assert set(scale.commands) == {b"Q"}
    assert [(t["material"], t["net_kg"]) for t in tickets(sink)] == [("SAND", 30_000.0)]
    values = [(r.value, r.quality) for r in sink.readings]
    assert (30_000.0, Quality.UNCERTAIN) in values
    assert (30_000.0, Quality.GOOD) in values


def test_a_ticket_config_that_names_nothing_is_refused(links: Path) -> None:
    cfg = config(links / "x", "mt-sics", ticket={"threshold": 1.0, "weight": "mass"})
    with pytest.raises(ConfigError, match=r"ticket.weight.*'mass'"):
        AsciiSource(cfg, clock=HostStamper())
