from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from firmware_bridge.backoff import Backoff
from firmware_bridge.errors import PortBusyError, PortLostError, PortUnavailableError
from firmware_bridge.port import NullModem, PtyDevice, SerialPort
from firmware_bridge.port_config import PortConfig

pytestmark = pytest.mark.serial


async def test_open_read_write_through_a_by_id_style_symlink(links: Path) -> None:
    device = PtyDevice(str(links / "dev"))
    by_id = links / "usb-FTDI_FT232R_A1B2C3-if00-port0"
    by_id.symlink_to(links / "dev")
    await device.write(b"stale bytes before open")
    port = SerialPort.open(PortConfig(path=str(by_id)))
    try:
        assert port.resolved == device.slave_path
        await device.write(b"hello")
        assert await port.read() == b"hello"  # the stale input was flushed at open
        await port.write(b"world")
        assert await device.read() == b"world"
        assert port.still_present()
        assert port.stats.opens == 1
        assert port.stats.bytes_in == 5
        assert port.stats.bytes_out == 5
    finally:
        port.close()
        device.close()


async def test_one_owner_per_port(links: Path) -> None:
    device = PtyDevice(str(links / "dev"))
    first = SerialPort.open(PortConfig(path=str(links / "dev")))
    try:
        with pytest.raises(PortBusyError, match="already owned"):
            SerialPort.open(PortConfig(path=str(links / "dev")))
    finally:
        first.close()
    second = SerialPort.open(PortConfig(path=str(links / "dev")))  # free again after close
    second.close()
    device.close()


def test_missing_port_is_unavailable(links: Path) -> None:
    with pytest.raises(PortUnavailableError, match="not available"):
        SerialPort.open(PortConfig(path=str(links / "nothing-here")))


async def test_unplug_is_detected_and_replug_reopens(links: Path) -> None:
    path = str(links / "dev")
    device = PtyDevice(path)
    port = SerialPort.open(PortConfig(path=path))
    reader = asyncio.create_task(port.read())
    await asyncio.sleep(0.05)
    device.close()  # unplug: the slave reads EIO and the path disappears
    with pytest.raises(PortLostError):
        await asyncio.wait_for(reader, 5)
    port.close()
    assert not Path(path).is_symlink()  # noqa: ASYNC240 - a test's own check
    with pytest.raises(PortUnavailableError):
        SerialPort.open(PortConfig(path=path))
    replugged = PtyDevice(path)
    port = SerialPort.open(PortConfig(path=path))
    await replugged.write(b"back")
    assert await port.read() == b"back"
    port.close()
    replugged.close()


async def test_replug_under_the_same_name_is_visible(links: Path) -> None:
    path = str(links / "dev")
    device = PtyDevice(path)
    port = SerialPort.open(PortConfig(path=path))
    other = PtyDevice(path)  # a new device took the name while we still hold the old one
    assert not port.still_present()
    port.close()
    other.close()
    device.close()


async def test_null_modem_relays_and_can_be_cut(links: Path) -> None:
    async with NullModem(str(links / "a"), str(links / "b")) as modem:
        a = SerialPort.open(PortConfig(path=str(links / "a")))
        b = SerialPort.open(PortConfig(path=str(links / "b")))
        await a.write(b"ping")
        assert await asyncio.wait_for(b.read(), 5) == b"ping"
        await modem.cut("b")
        with pytest.raises(PortLostError):
            await asyncio.wait_for(b.read(), 5)
        b.close()
        await modem.splice("b")
        b = SerialPort.open(PortConfig(path=str(links / "b")))
        await b.write(b"pong")
        assert await asyncio.wait_for(a.read(), 5) == b"pong"
        a.close()
        b.close()


def test_backoff_is_capped_jittered_and_resets() -> None:
    backoff = Backoff(0.1, 2.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(0 < d <= 2.0 for d in delays)
    assert max(delays[-4:]) > 1.0  # grew to the cap
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 0.1
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(0, 1)
