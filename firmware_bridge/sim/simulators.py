"""Simulated serial instruments on pseudo-terminals, for the tests and `make demo`.

- `ModbusRtuBus`: pymodbus' own RTU server as the meters on one RS-485 line, on one end of a
  `NullModem`; a Modbus source opens the other end (`bus_link`). Units are plain pymodbus register
  contexts (fixed registers, what the tests use) or `RegisterDevice`s that compute their registers
  at every read (`SimulatedMeter`). A unit id nobody has stays silent, as on a real bus, and
  `silent = True` makes the whole bus silent (meters switched off) without closing the port.
  The bus counts every read request it answered.
- `SimulatedMeter`: a meter whose register map is a shipped profile (`eastron-sdm630` by default),
  resolved exactly as the agent resolves it, with plausible values (voltages, currents, power,
  frequency, and energy counters that grow with the power drawn). It counts, per metric, how many
  values it served: a read request answered counts once for every point it fully covers, so a
  poller that turns each answered request into one reading per point must end up with exactly
  `served[metric]` readings of each metric.
- `Weighbridge`: a weighbridge indicator that prints one line per weighed truck
  (`T<ticket>,<MATERIAL>,<lot>,<net kg>,<status>*<xor8>`, the format of the example config), once
  it has been told to start printing; it keeps the list of tickets it printed.

The counts are what the demo's summary checks the receiver against, so they are exact: a request
is counted as answered when its registers are handed to pymodbus, which sends them at once; a
request left unanswered (silence) is never counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSimulatorContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer

from firmware_bridge.errors import PortLostError
from firmware_bridge.modbus_config import ModbusConfig, resolve
from firmware_bridge.modbus_map import Point, encode_words
from firmware_bridge.port import NullModem, PtyDevice


class RegisterDevice(Protocol):
    """A unit that computes its registers when read."""

    def read(self, function: int, address: int, count: int) -> list[int] | None:
        """`count` registers from `address` (function 3 or 4); None: not served (silence)."""
        ...


@dataclass(slots=True)
class BusStats:
    answered: int = 0  # read requests answered with registers
    registers: int = 0  # registers in those answers
    ignored: int = 0  # requests left unanswered: unknown unit, or the bus was silent


class _Datastore:
    """Stands between pymodbus' server and its data: silence for unknown units (pymodbus 3.16's
    `ignore_missing_devices` path falls back to unit 0 and fails with KeyError before it can
    ignore the request, answering exception 4 instead), simulated units, counting."""

    def __init__(self, inner: Any, bus: ModbusRtuBus) -> None:
        self.inner = inner
        self.bus = bus

    def device_ids(self) -> list[int]:
        return sorted(self.bus.units)

    def _check(self, device_id: int) -> None:
        if self.bus.silent or device_id not in self.bus.units:
            self.bus.stats.ignored += 1
            raise NoSuchIdException(f"no unit {device_id}")

    async def async_getValues(  # noqa: N802 - pymodbus' name
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        self._check(device_id)
        unit = self.bus.units[device_id]
        if isinstance(unit, ModbusDeviceContext):
            values = await self.inner.async_getValues(device_id, func_code, address, count)
        else:
            values = unit.read(func_code, address, count)
            if values is None:
                self.bus.stats.ignored += 1
                raise NoSuchIdException(f"unit {device_id} does not serve {address}+{count}")
        if isinstance(values, list):
            self.bus.stats.answered += 1
            self.bus.stats.registers += len(values)
        return values

    async def async_setValues(  # noqa: N802 - pymodbus' name
        self, device_id: int, func_code: int, address: int, values: Any
    ) -> Any:
        self._check(device_id)
        return await self.inner.async_setValues(device_id, func_code, address, values)


class ModbusRtuBus:
    """pymodbus' RTU server on `meter_link`, joined to `bus_link` by a null modem.

    `async with ModbusRtuBus(...) as bus:` serves until the block ends; `bus.modem` can cut and
    splice the client's side (an adapter unplugged and plugged back)."""

    def __init__(
        self,
        meter_link: str,
        bus_link: str,
        units: Mapping[int, ModbusDeviceContext | RegisterDevice],
        *,
        baudrate: int = 115200,
    ) -> None:
        if not units:
            raise ValueError("a bus needs at least one unit")
        self.meter_link = meter_link
        self.bus_link = bus_link
        self.units = dict(units)
        self.baudrate = baudrate
        self.silent = False
        self.stats = BusStats()
        self.modem = NullModem(meter_link, bus_link)
        self._server: ModbusSerialServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ModbusRtuBus:
        await self.modem.__aenter__()
        try:
            # pymodbus wants a context for every unit; simulated units get an empty one that
            # _Datastore never consults.
            contexts: dict[int, ModbusDeviceContext | ModbusSimulatorContext] = {
                uid: u if isinstance(u, ModbusDeviceContext) else ModbusDeviceContext()
                for uid, u in self.units.items()
            }
            server = ModbusSerialServer(
                ModbusServerContext(devices=contexts, single=False),
                framer=FramerType.RTU,
                port=self.meter_link,
                baudrate=self.baudrate,
                ignore_missing_devices=True,
            )
            server.context = _Datastore(server.context, self)  # type: ignore[assignment]
            self._server = server
            self._task = asyncio.create_task(server.serve_forever(), name="pymodbus rtu server")
            await asyncio.sleep(0.1)  # the server opens its end of the modem
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.modem.close()


def profile_points(profile: str, *, unit_id: int = 1) -> tuple[Point, ...]:
    """The points of a shipped profile (or a .toml map), resolved as the agent resolves them."""
    config = msgspec.convert(
        {
            "port": {"path": "/dev/null"},
            "devices": [{"name": "meter", "unit_id": unit_id, "profile": profile}],
        },
        ModbusConfig,
    )
    return resolve(config)[0].points


class SimulatedMeter:
    """A three-phase energy meter drawing a slowly varying load; see the module docstring.

    Values by metric name: `voltage_*` ≈ 230 V, `current_*` 30-60 A, `power_l*` and
    `power_total` from those (power factor 0.95), `frequency` ≈ 50 Hz, `energy_import`
    integrating the power (kWh), `energy_export` a small constant, `energy_total` their sum;
    any other metric reads 0."""

    def __init__(
        self,
        profile: str = "eastron-sdm630",
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        energy_kwh: float = 12_345.0,
    ) -> None:
        self.points = profile_points(profile)
        self._rng = rng or random.Random()  # noqa: S311 - noise, not crypto
        self._clock = clock
        self._t0 = self._last = clock()
        self.energy_import_kwh = energy_kwh
        self.energy_export_kwh = 12.5
        self.served: Counter[str] = Counter()  # metric -> values served
        self.requests = 0

    def values(self) -> dict[str, float]:
        """The meter's present values (advancing its energy counter to now)."""
        now = self._clock()
        t = now - self._t0
        volts = [230.0 + 2.0 * math.sin(t / 7 + k) + self._rng.uniform(-0.3, 0.3) for k in range(3)]
        amps = [45.0 + 15.0 * math.sin(t / 11 + 2 * k) + self._rng.uniform(-1, 1) for k in range(3)]
        watts = [v * a * 0.95 for v, a in zip(volts, amps, strict=True)]
        total = sum(watts)
        self.energy_import_kwh += total * (now - self._last) / 3_600_000
        self._last = now
        out = {f"voltage_l{k + 1}": volts[k] for k in range(3)}
        out |= {f"current_l{k + 1}": amps[k] for k in range(3)}
        out |= {f"power_l{k + 1}": watts[k] for k in range(3)}
        out |= {
            "power_total": total,
            "frequency": 50.0 + 0.05 * math.sin(t / 5),
            "energy_import": self.energy_import_kwh,
            "energy_export": self.energy_export_kwh,
            "energy_total": self.energy_import_kwh + self.energy_export_kwh,
        }
        return out

    def read(self, function: int, address: int, count: int) -> list[int] | None:
        end = address + count
        covered = [p for p in self.points if p.function == function and address <= p.address < end]
        if not covered or any(p.end > end for p in covered):
            return None  # a request this meter does not expect: stay silent, count nothing
        regs = [0] * count
        values = self.values()
        for p in covered:
            raw = (values.get(p.metric, 0.0) - p.offset) / p.scale
            words = encode_words(raw, p.dtype, p.word_order, p.byte_order)
            regs[p.address - address : p.end - address] = words
            self.served[p.metric] += 1
        self.requests += 1
        return regs


def xor8(text: str) -> str:
    """The XOR of the bytes of `text`, as two hex digits (the weighbridge line's checksum)."""
    x = 0
    for b in text.encode("latin-1"):
        x ^= b
    return f"{x:02X}"


@dataclass(frozen=True, slots=True)
class Ticket:
    number: int
    material: str
    lot: str
    net_kg: int
    status: str = "O"  # O: weighed automatically, M: entered by hand

    def line(self) -> bytes:
        body = f"T{self.number},{self.material},{self.lot},{self.net_kg},{self.status}*"
        return (body + xor8(body) + "\r\n").encode("latin-1")


MATERIALS = ("SAND", "GRAVEL", "CEMENT", "CLINKER", "LIMESTONE")


@dataclass
class Weighbridge:
    """Prints a ticket every `interval_s` once a line `start_command` arrived (None: at once).

    `tickets` lists what was printed, in order, and `printed_ms` when (wall clock, ms);
    `stop()` stops printing (the indicator stays connected). `run()` returns when the port goes
    away."""

    device: PtyDevice
    interval_s: float = 3.0
    first_ticket: int = 1001
    start_command: bytes | None = b"PRINT ON"
    rng: random.Random = field(default_factory=random.Random)
    tickets: list[Ticket] = field(default_factory=list)
    commands: list[bytes] = field(default_factory=list)
    printed_ms: list[int] = field(default_factory=list)
    printing: bool = False
    stopped: bool = False

    def next_ticket(self) -> Ticket:
        n = self.first_ticket + len(self.tickets)
        material = self.rng.choice(MATERIALS)
        net = self.rng.randrange(8_000, 32_000, 10)
        return Ticket(n, material, f"L{n % 97:02d}-{material[:2]}", net)

    def stop(self) -> None:
        self.stopped = True

    async def run(self) -> None:
        self.printing = self.start_command is None
        async with asyncio.TaskGroup() as tg:
            printer = tg.create_task(self._print(), name="weighbridge printer")
            await self._read_commands()
            printer.cancel()

    async def _read_commands(self) -> None:
        buf = b""
        while True:
            try:
                buf += await self.device.read()
            except PortLostError:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip()
                self.commands.append(line)
                if line == self.start_command:
                    self.printing = True

    async def _print(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s if self.printing else 0.02)
            if not self.printing or self.stopped:
                continue
            ticket = self.next_ticket()
            try:
                await self.device.write(ticket.line())
            except PortLostError:
                return
            self.tickets.append(ticket)
            self.printed_ms.append(time.time_ns() // 1_000_000)
