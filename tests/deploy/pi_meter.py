"""An emulated serial meter for `make pi-check`: `python -m tests.deploy.pi_meter DIR`.

The project's Modbus simulator (an Eastron SDM630, unit 1, Modbus RTU at 115200 baud) on a null
modem of two ptys published as DIR/meter and DIR/bus. The gateway under test opens the pty DIR/bus
points at (bind-mounted into its root as /dev/ttyUSB0). DIR/ready holds that pty's path once the
meter answers; at SIGTERM DIR/served.json gets the number of requests the meter answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from firmware_bridge.sim.simulators import ModbusRtuBus, SimulatedMeter


async def serve(directory: Path) -> int:
    meter = SimulatedMeter()
    bus = ModbusRtuBus(str(directory / "meter"), str(directory / "bus"), {1: meter})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with bus:
        pty = os.readlink(directory / "bus")
        (directory / "ready").write_text(pty, encoding="utf-8")
        await stop.wait()
    answered = {"requests": meter.requests, "answered": bus.stats.answered}
    (directory / "served.json").write_text(json.dumps(answered), encoding="utf-8")
    return 0


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="pi-meter: %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    return asyncio.run(serve(Path(sys.argv[1])))


if __name__ == "__main__":
    raise SystemExit(main())
