"""The demo's emulated devices, in one process: `python -m demo.devices --dir RUN [...]`.

Each device publishes its serial port as a pty symlink under RUN/dev/ (see `plant.Links`):
- `mcu`: our firmware's emulator (`firmware_bridge.sim.emulator`), two channels, readings kept in
  its flash file until the gateway acknowledges them;
- `bus`: an Eastron SDM630 meter, unit 1, answering Modbus RTU (`firmware_bridge.sim.simulators`);
- `weighbridge`: an indicator printing a ticket line every few seconds once sent `PRINT ON`;
- with `--mqtt-port`, temperature/humidity sensors publishing to the demo's broker (`demo.mqtt`).

What each one counts as **produced** (the summary checks the receiver against exactly this):
- mcu: every reading the firmware took, by (boot, seq, channel, value); all of them must be
  stored once, since the firmware deletes a reading only when the gateway acknowledged it;
- meter: per metric, the values it served in read requests it answered; every answered request
  must become one reading per point it covers;
- weighbridge: every ticket line written to the port (after the gateway asked for them, so none
  is written into a port nobody reads);
- mqtt: every message the broker acknowledged, two readings each.

Signals (the demo starts this process in a process group of its own):
  SIGUSR1          stop producing: the MCU takes no more readings but keeps answering, so what it
                   holds is acknowledged; the meter goes silent (the gateway then stores BAD
                   markers, its explicit "no value", which are not counted as produced); the
                   weighbridge stops printing; the sensors stop publishing.
  SIGUSR2          pause the MQTT sensors, or resume them (the soak restarts the broker between).
  SIGTERM, SIGINT  exit, after writing the report.
Files in RUN/devices/: `status.json`, small, rewritten every 0.2 s (counts, `ready`, `stopped`,
MCU readings not yet acknowledged); `report.json` at exit, every produced item.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from demo.mqtt import Sensors
from demo.plant import Links
from firmware_bridge.errors import PortError
from firmware_bridge.port import PtyDevice
from firmware_bridge.sim.emulator import Emulator, FlashLog, Record
from firmware_bridge.sim.simulators import ModbusRtuBus, SimulatedMeter, Weighbridge


class RecordingFlash(FlashLog):
    """The emulator's flash, also remembering every reading ever taken (the "produced" list)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.taken: list[Record] = []

    def append(self, channel: int, ts_ms: int, flags: int, value: float) -> Record:
        record = super().append(channel, ts_ms, flags, value)
        self.taken.append(record)
        return record


class Devices:
    def __init__(self, args: argparse.Namespace) -> None:
        run = Path(args.dir)
        self.state = run / "devices"
        self.state.mkdir(parents=True, exist_ok=True)
        links = Links.under(run / "dev")
        links.mcu.parent.mkdir(parents=True, exist_ok=True)
        self.mcu_port = PtyDevice(str(links.mcu))
        self.flash = RecordingFlash(self.state / "mcu.flash")
        self.mcu = Emulator(self.mcu_port, self.flash, channels=2, rate_hz=args.mcu_rate_hz)
        self.meter = SimulatedMeter()
        self.bus = ModbusRtuBus(str(links.meter), str(links.bus), {1: self.meter})
        self.wb_port = PtyDevice(str(links.weighbridge))
        self.weighbridge = Weighbridge(self.wb_port, interval_s=args.ticket_interval_s)
        self.sensors = (
            Sensors(args.mqtt_port, Path(args.mqtt_log)) if args.mqtt_port is not None else None
        )
        self.ready = False
        self.stopped = False

    def stop_producing(self) -> None:
        self.stopped = True
        self.mcu.max_readings = max(self.mcu.produced, 1)
        self.bus.silent = True
        self.weighbridge.stop()
        if self.sensors is not None:
            self.sensors.stop()

    def toggle_sensors(self) -> None:
        if self.sensors is not None:
            self.sensors.paused = not self.sensors.paused

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "ready": self.ready,
            "stopped": self.stopped,
            "mcu": {"produced": len(self.flash.taken), "unacked": len(self.flash.records)},
            "meter": {
                "requests": self.meter.requests,
                "values": sum(self.meter.served.values()),
                "silent": self.bus.silent,
            },
            "weighbridge": {
                "tickets": len(self.weighbridge.tickets),
                "printing": self.weighbridge.printing,
            },
        }
        if self.sensors is not None:
            out["mqtt"] = {
                "waiting_for_gateway": self.sensors.waiting,
                "messages": self.sensors.messages,
                "in_flight": self.sensors.in_flight,
                "quiet": self.sensors.quiet,
            }
        return out

    def report(self) -> dict[str, Any]:
        out = self.status()
        out["mcu"]["uid"] = self.flash.uid
        out["mcu"]["readings"] = [[r.boot, r.seq, r.channel, r.value] for r in self.flash.taken]
        out["meter"]["served"] = dict(self.meter.served)
        out["meter"]["answered_requests"] = self.bus.stats.answered
        out["meter"]["ignored_requests"] = self.bus.stats.ignored
        wb = self.weighbridge
        out["weighbridge"]["printed"] = [
            [t.number, t.material, t.lot, t.net_kg, ms]
            for t, ms in zip(wb.tickets, wb.printed_ms, strict=True)
        ]
        out["weighbridge"]["commands"] = [c.decode("latin-1") for c in self.weighbridge.commands]
        if self.sensors is not None:
            out["mqtt"]["acked"] = [list(a) for a in self.sensors.acked]
        return out

    def write(self, name: str, data: dict[str, Any]) -> None:
        path = self.state / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, self.stop_producing)
        loop.add_signal_handler(signal.SIGUSR2, self.toggle_sensors)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        async with self.bus:
            tasks = [
                asyncio.create_task(self.mcu.run(), name="mcu emulator"),
                asyncio.create_task(self.weighbridge.run(), name="weighbridge"),
            ]
            if self.sensors is not None:
                tasks.append(asyncio.create_task(self.sensors.run(), name="mqtt sensors"))
            self.ready = True
            try:
                while not done.is_set():
                    for task in tasks:
                        failure = task.exception() if task.done() else None
                        if failure is not None:
                            raise failure
                    self.write("status.json", self.status())
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            await done.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self.mcu_port.close()
        self.wb_port.close()
        self.flash.close()


def _args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo.devices", description=__doc__.split("\n")[0])
    p.add_argument("--dir", required=True, help="the demo's run directory")
    p.add_argument("--mcu-rate-hz", type=float, default=2.0, help="MCU reading rounds per second")
    p.add_argument("--ticket-interval-s", type=float, default=3.0, help="seconds between trucks")
    p.add_argument("--mqtt-port", type=int, default=None, help="the demo broker's port")
    p.add_argument("--mqtt-log", default="", help="the demo broker's log (shows subscriptions)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="devices: %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.ERROR)  # not its deprecation notices
    try:
        devices = Devices(args)
    except (PortError, OSError) as exc:
        print(f"devices: cannot set up: {exc}", file=sys.stderr)
        return 1
    status = 0
    try:
        asyncio.run(devices.run())
    except Exception as exc:  # a device failed: say which, and still write the report
        logging.getLogger("devices").exception("failed: %r", exc)
        status = 1
    finally:
        devices.close()
        devices.write("report.json", devices.report())
    return status


if __name__ == "__main__":
    raise SystemExit(main())
