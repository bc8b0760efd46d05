"""Gaps and late answers of the ASCII source, against simulated scales on real pseudo-terminals.

The outages are scaled down (`TIERLESS_GAP_SECONDS`, default 1.5 s; the field report had 15 s);
the assertions are on counts and order, with generous bounds, never on tight timing."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import msgspec
import pytest

from agent.sources import HostStamper
from agent.sources.ascii import AsciiSource
from agent.sources.gaps import DOWN_KIND, UP_KIND
from firmware_bridge.ascii_protocol import AsciiConfig
from firmware_bridge.port import PtyDevice
from firmware_bridge.sim.scales import ScaleSim, mt_sics_line
from tests.agent.sources.conftest import Recorder
from tests.firmware_bridge.conftest import running
from wire.models import Quality

pytestmark = pytest.mark.serial

GAP_S = float(os.environ.get("TIERLESS_GAP_SECONDS", "1.5"))


def config(link: Path, **kw: object) -> AsciiConfig:
    raw = {
        "name": "scale-1",
        "port": {"path": str(link), "baudrate": 9600},
        "preset": "mt-sics",
        "poll_interval_ms": 100,
        "answer_timeout_ms": 100,
        "reopen_initial_ms": 200,
        "reopen_max_ms": 10_000,
        **kw,
    }
    return msgspec.convert(raw, AsciiConfig)


def events(sink: Recorder, kind: str) -> list[dict[str, object]]:
    return [dict(e.attrs) for e in sink.events if e.kind == kind]


async def test_unplugged_polled_scale_gives_bad_readings_per_poll_and_one_line_each_way(
    links: Path, sink: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.ascii")
    link = links / "scale"
    device = PtyDevice(str(link))
    scale = ScaleSim(device, weight=120.0)
    source = AsciiSource(config(link), clock=HostStamper())
    loop = asyncio.get_running_loop()
    async with running(source.run(sink), "ascii"):
        async with running(scale.run(), "scale"):
            await sink.wait_for(lambda: len(sink.readings) >= 3)
        device.close()  # unplugged: the path disappears
        unplugged = len(sink.readings)
        await asyncio.sleep(GAP_S)
        during = sink.readings[unplugged:]
        device = PtyDevice(str(link))  # plugged back
        replugged_at = loop.time()
        scale = ScaleSim(device, weight=130.0)
        async with running(scale.run(), "scale again"):
            await sink.wait_for(lambda: any(r.value == 130.0 for r in sink.readings))
            back_after = loop.time() - replugged_at
            await sink.wait_for(lambda: bool(events(sink, UP_KIND)))
    device.close()
    # while unplugged: BAD readings at the poll interval (100 ms), as Modbus does
    assert len(during) >= GAP_S / 0.1 / 3, len(during)
    assert all(r.quality == Quality.BAD and r.value == 0.0 for r in during)
    assert source.stats.missed_polls >= len(during) - 1
    # one event and one line each way, with how long it was gone
    assert [e["reason"] for e in events(sink, DOWN_KIND)] == ["port_lost"]
    assert (source.stats.outages.downs, source.stats.outages.ups) == (1, 1)  # exported as metrics
    (up,) = events(sink, UP_KIND)
    assert up["source"] == "scale-1"
    assert isinstance(up["down_ms"], int)
    assert up["down_ms"] >= GAP_S * 1000 * 0.9
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.sources.ascii"]
    assert len([m for m in lines if "scale-1: lost (port_lost" in m]) == 1
    assert len([m for m in lines if "scale-1: back after" in m]) == 1
    # reopened as soon as the path came back, not after the backoff grew
    assert back_after < 3.0


class NumberingScale(ScaleSim):
    """Answers request n with the weight n, in order, as an instrument does: every
    `late_every`-th request keeps it busy for `late_s`, and requests behind it wait."""

    late_every = 3
    late_s = 0.25
    busy: asyncio.Lock | None = None

    async def _answer(self) -> None:
        n = len(self.commands)
        self.busy = self.busy or asyncio.Lock()
        async with self.busy:
            if n % self.late_every == 0:
                await asyncio.sleep(self.late_s)
            if await self._write(mt_sics_line(float(n))):
                self.answered += 1


async def test_a_late_answer_is_dropped_never_stamped_onto_a_later_poll(links: Path) -> None:
    link = links / "scale"
    device = PtyDevice(str(link))
    scale = NumberingScale(device)
    seen: list[tuple[float, int, int]] = []  # (value, quality, requests the scale had then)

    class Witness(Recorder):
        def add(self, series_id: int, value: float, quality: int = 0, ts_ms: int | None = None):
            seen.append((value, quality, len(scale.commands)))
            super().add(series_id, value, quality, ts_ms)

    sink = Witness()
    source = AsciiSource(config(link, late_answer_ms=600), clock=HostStamper())
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await sink.wait_for(lambda: scale.answered >= 12, within=30)
    device.close()
    good = [(v, n) for v, q, n in seen if q == Quality.GOOD]
    assert len(good) >= 5
    # a GOOD value n is the answer to request n, the latest request sent when it was stored
    assert all(v == n for v, n in good), good
    assert source.stats.late_answers >= 2
    assert source.stats.timeouts >= 2


async def test_silent_streaming_scale_is_a_gap_with_one_line_each_way(
    links: Path, sink: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.ascii")
    link = links / "scale"
    device = PtyDevice(str(link))
    scale = ScaleSim(device, weight=55.0)
    source = AsciiSource(
        config(link, mode="streaming", silence_timeout_ms=300), clock=HostStamper()
    )
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await sink.wait_for(lambda: len(sink.readings) >= 3)
        scale.silent = True
        await sink.wait_for(lambda: bool(events(sink, DOWN_KIND)))
        await asyncio.sleep(GAP_S)
        scale.silent = False
        await sink.wait_for(lambda: bool(events(sink, UP_KIND)))
    device.close()
    assert [e["reason"] for e in events(sink, DOWN_KIND)] == ["silent"]
    (up,) = events(sink, UP_KIND)
    assert isinstance(up["down_ms"], int)
    assert up["down_ms"] >= GAP_S * 1000
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.sources.ascii"]
    assert len([m for m in lines if "scale-1: lost (silent" in m]) == 1
    assert len([m for m in lines if "scale-1: back after" in m]) == 1
    # the start command is repeated while silent (a power-cycled scale stops streaming)
    assert scale.commands.count(b"SIR") >= 2


async def test_a_ticket_printer_silent_between_trucks_is_no_gap(
    links: Path, sink: Recorder
) -> None:
    link = links / "printer"
    device = PtyDevice(str(link))
    scale = ScaleSim(device, weight=55.0)
    cfg = config(link, mode="streaming", silence_timeout_ms=200, on_silence="check_port")
    source = AsciiSource(cfg, clock=HostStamper())
    async with running(scale.run(), "printer"), running(source.run(sink), "ascii"):
        await sink.wait_for(lambda: len(sink.readings) >= 2)
        scale.silent = True
        await sink.wait_for(lambda: source.stats.timeouts >= 3)
        scale.silent = False
        n = len(sink.readings)
        await sink.wait_for(lambda: len(sink.readings) > n)
    device.close()
    assert sink.events == []
