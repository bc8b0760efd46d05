"""The ASCII source against simulated instruments on real pseudo-terminals."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from agent.sources import HostStamper
from agent.sources.ascii import AsciiSource
from firmware_bridge.ascii_protocol import AsciiConfig
from firmware_bridge.errors import PortLostError
from firmware_bridge.port import PtyDevice
from tests.agent.sources.conftest import Recorder
from tests.firmware_bridge.conftest import running
from tests.firmware_bridge.test_ascii_protocol import TICKET, xor8
from wire.models import Quality

pytestmark = pytest.mark.serial


class Scale:
    """An MT-SICS balance: answers `SI` from a script (None: stay silent), streams on `SIR`."""

    def __init__(
        self, device: PtyDevice, answers: list[str | None], stream: list[str] | None = None
    ):
        self.device = device
        self.answers = deque(answers)
        self.stream = stream or []
        self.commands: list[bytes] = []

    async def run(self) -> None:
        buf = b""
        while True:
            try:
                buf += await self.device.read()
            except PortLostError:
                return
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                self.commands.append(line)
                if line == b"SI" and self.answers:
                    answer = self.answers.popleft()
                    if answer is not None:
                        await self.device.write(answer.encode("latin-1") + b"\r\n")
                elif line == b"SIR":
                    for item in self.stream:
                        await self.device.write(item.encode("latin-1"))
                        await asyncio.sleep(0.002)


@pytest.fixture
def plug(links: Path) -> Iterator[Callable[[str], PtyDevice]]:
    """`plug(name)`: an instrument at links/name, unplugged after the test even when it fails
    (so a failure shows as itself, not as a leaked descriptor too)."""
    devices: list[PtyDevice] = []

    def make(name: str) -> PtyDevice:
        devices.append(PtyDevice(str(links / name)))
        return devices[-1]

    yield make
    for device in devices:
        device.close()


def config(link: Path, **kw: object) -> AsciiConfig:
    raw = {
        "port": {"path": str(link), "baudrate": 9600},
        "preset": "mt-sics",
        "poll_interval_ms": 20,
        "answer_timeout_ms": 100,
        "reopen_initial_ms": 20,
        "reopen_max_ms": 100,
        **kw,
    }
    return msgspec.convert(raw, AsciiConfig)


async def test_polled_scale_with_garbage_overload_and_silence(
    links: Path, sink: Recorder, plug: Callable[[str], PtyDevice]
) -> None:
    device = plug("scale")
    scale = Scale(
        device,
        [
            "S S     100.00 g",
            "#%&*garbage",  # not an answer: counted, and the poll times out
            "S +",  # overload
            "ES",  # error answer
            None,  # silence
            "S D     100.10 g",  # still moving
            "S S     100.20 g",
        ],
    )
    # late_answer_ms=0: no pause after a timeout, so each scripted answer is one poll. The
    # script is one answer per poll, so no answer may come after its poll's timeout: on a loaded
    # machine 100 ms was too short (the first answer came late and was discarded). 1 s is the
    # default; two polls (garbage, silence) wait it out.
    source = AsciiSource(
        config(links / "scale", late_answer_ms=0, answer_timeout_ms=1000), clock=HostStamper()
    )
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await sink.wait_for(lambda: len(sink.readings) >= 7, within=30)
    got = [(r.value, r.quality, r.series.unit) for r in sink.readings[:7]]
    assert got[0] == (100.0, Quality.GOOD, "g")
    assert got[1] == (0.0, Quality.BAD, "g")  # garbage then timeout: explicit gap
    assert got[2] == (0.0, Quality.BAD, "g")  # overload names no unit: the last one counts
    assert got[3] == (0.0, Quality.BAD, "g")  # ES
    assert got[4] == (0.0, Quality.BAD, "g")  # silence
    assert len(sink.keys) == 1  # one series, never a unit-less twin
    assert got[5] == (100.1, Quality.UNCERTAIN, "g")
    assert got[6] == (100.2, Quality.GOOD, "g")
    assert source.stats.unparsable == 1
    assert source.stats.error_answers == 1
    assert source.stats.timeouts == 2
    assert scale.commands[:3] == [b"SI", b"SI", b"SI"]


async def test_streaming_scale(
    links: Path, sink: Recorder, plug: Callable[[str], PtyDevice]
) -> None:
    device = plug("scale")
    stream = ["S S      1.00 kg\r\n", "S D   1.5", "0 kg\r\n", "\xff\xfe noise\r\n", "S +\r\n"]
    stream += ["x" * 400 + "\r\n", "S S      2.00 kg\r\n"]
    scale = Scale(device, [], stream)
    source = AsciiSource(config(links / "scale", mode="streaming"), clock=HostStamper())
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await sink.wait_for(lambda: len(sink.readings) >= 4)
    got = [(r.value, r.quality) for r in sink.readings]
    assert got == [
        (1.0, Quality.GOOD),
        (1.5, Quality.UNCERTAIN),
        (0.0, Quality.BAD),
        (2.0, Quality.GOOD),
    ]
    assert source.stats.unparsable == 1
    assert source.stats.lines.oversized == 1
    assert scale.commands == [b"SIR"]


async def test_weighbridge_tickets_become_events(
    links: Path, sink: Recorder, plug: Callable[[str], PtyDevice]
) -> None:
    device = plug("bridge")
    lines = []
    for n, (material, net) in enumerate([("GRAVEL", 25340), ("SAND", 18020)]):
        body = f"T{100 + n},{material},L-{n},{net},O*"
        lines.append(body + xor8(body) + "\r\n")
    lines.insert(1, "T999,SAND,L-9,1,O*00\r\n")  # bad checksum
    raw = msgspec.to_builtins(TICKET)
    raw.update(port={"path": str(links / "bridge")}, reopen_initial_ms=20)
    source = AsciiSource(msgspec.convert(raw, AsciiConfig), clock=HostStamper())

    async def weighbridge() -> None:
        for line in lines:
            await device.write(line.encode())

    async with running(source.run(sink), "ascii"):
        await asyncio.sleep(0.1)
        async with running(weighbridge(), "weighbridge"):
            await sink.wait_for(lambda: len(sink.events) >= 2)
    kinds = {e.kind for e in sink.events}
    assert kinds == {"weighbridge_ticket"}
    assert [dict(e.attrs)["material"] for e in sink.events] == ["GRAVEL", "SAND"]
    assert [r.value for r in sink.readings] == [25340.0, 18020.0]
    assert source.stats.unparsable == 1


async def test_replugged_instrument_is_reopened(
    links: Path, sink: Recorder, plug: Callable[[str], PtyDevice]
) -> None:
    device = plug("scale")
    scale = Scale(device, ["S S 1.00 g"] * 1000)
    source = AsciiSource(config(links / "scale"), clock=HostStamper())
    async with running(source.run(sink), "ascii"):
        async with running(scale.run(), "scale"):
            await sink.wait_for(lambda: len(sink.readings) >= 3)
        device.close()
        await asyncio.sleep(0.1)
        device = plug("scale")
        scale = Scale(device, ["S S 2.00 g"] * 1000)
        async with running(scale.run(), "scale again"):
            await sink.wait_for(lambda: any(r.value == 2.0 for r in sink.readings))
    assert source.stats.port.opens >= 2
    device.close()


async def test_streaming_scale_bit_errors_in_the_unit_make_no_series(
    links: Path, sink: Recorder
) -> None:
    """Observed: bit errors on a scale line created `weight` series in `{g`, `kG`, `ke`."""
    device = PtyDevice(str(links / "scale"))
    stream = [
        "S S     100.00 kg\r\n",
        "S S     100.00 {g\r\n",
        "S D     100.00 kG\r\n",
        "S S     100.00 ke\r\n",
        "S S     101.00 kg\r\n",
    ]
    scale = Scale(device, [], stream)
    cfg = config(links / "scale", mode="streaming", area="gate", medium="material")
    source = AsciiSource(cfg, clock=HostStamper())
    async with running(scale.run(), "scale"), running(source.run(sink), "ascii"):
        await sink.wait_for(lambda: len(sink.readings) >= 2)
    assert [(r.value, r.series.unit) for r in sink.readings] == [(100.0, "kg"), (101.0, "kg")]
    assert {(k.unit, k.area, k.medium) for k in sink.keys} == {("kg", "gate", "material")}
    assert source.stats.bad_unit == 3
    device.close()


async def test_polled_value_out_of_range_is_bad_and_counted(links: Path, sink: Recorder) -> None:
    device = PtyDevice(str(links / "probe"))
    scale = Scale(device, ["S S 140.5 %", "S S 45.0 %"])
    cfg = config(
        links / "probe",
        preset=None,
        command="SI",
        pattern=r"^S S\s+(?P<rh>\S+) %$",
        values=[{"group": "rh", "metric": "humidity", "unit": "%"}],
    )
    source = AsciiSource(cfg, clock=HostStamper())
    async with running(scale.run(), "probe"), running(source.run(sink), "ascii"):
        await sink.wait_for(lambda: len(sink.readings) >= 2)
    got = [(r.value, r.quality) for r in sink.readings[:2]]
    assert got == [(140.5, Quality.BAD), (45.0, Quality.GOOD)]
    assert source.stats.out_of_range == 1
    device.close()
