"""The Modbus source: one task per bus polls every device on it through pymodbus.

One owner per bus: all unit ids of one RS-485 line are polled from one task, one request at a
time, so requests never interleave on the wire. For RTU, pymodbus opens the port itself through
pyserial with `exclusive=True`, which takes the same flock as `firmware_bridge.port.SerialPort`:
two sources on one port exclude each other. This is the only module that talks to pymodbus' I/O;
its exceptions end here.

Every poll ends in readings, good or not:
- a device that answers: one reading per point, GOOD (a NaN/inf float register: BAD, value 0);
- an exception response or a timeout (after pymodbus' retries): the request's points BAD, counted
  per unit (`stats.units[unit]`);
- `down_after_failures` timeouts in a row open the unit's circuit: it is not asked again for
  `down_retry_ms` (so one dead meter costs the bus one timeout per retry period, not one per poll)
  and its points are reported BAD at their poll interval meanwhile;
- the link lost (adapter unplugged, TCP reset): every point BAD at its interval, and the client is
  rebuilt with capped jittered backoff, the port path resolved again (by-id names survive).
A missing reading is never silent: the BAD readings are the explicit no-data markers.

Gaps (`agent.sources.gaps`): the link lost or not connecting is a `source_down` event (reason
`link_lost`) and one log line, the next answered request `source_up`; a unit whose circuit opens
is `source_down` with `part` = its device name (reason `unit_down`), its next answer `source_up`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from agent.sources import Sink, Stamper, add_readings
from agent.sources.gaps import Gaps, GapStats
from agent.sources.lognames import name_foreign_logs
from agent.sources.throttle import LogThrottle
from firmware_bridge.backoff import Backoff
from firmware_bridge.errors import DeviceError, DeviceExceptionError, DeviceTimeoutError
from firmware_bridge.modbus_config import DevicePlan, ModbusConfig, resolve
from firmware_bridge.modbus_map import Point, ReadRequest
from wire.models import Quality, Reading, SeriesKey

_Client = AsyncModbusSerialClient | AsyncModbusTcpClient


class _LinkLostError(Exception):
    """Internal: the client lost its transport; rebuild it."""


@dataclass(slots=True)
class UnitStats:
    polls: int = 0  # polls of this unit (one per poll interval, however many requests)
    requests: int = 0  # requests sent (a poll of a unit takes one per planned request)
    ok: int = 0
    timeouts: int = 0
    exceptions: dict[int, int] = field(default_factory=dict)  # Modbus exception code → count
    errors: int = 0  # garbled or short answers
    skipped_down: int = 0  # requests not sent because the unit's circuit was open
    consecutive_failures: int = 0
    down_until: float = 0.0


@dataclass(slots=True)
class ModbusStats:
    connects: int = 0
    connect_failures: int = 0
    links_lost: int = 0
    readings: int = 0
    bad_readings: int = 0
    non_finite: int = 0
    out_of_range: int = 0  # outside the point's plausible range: stored BAD
    outages: GapStats = field(default_factory=GapStats)  # source_down / source_up events
    units: dict[int, UnitStats] = field(default_factory=dict)


class ModbusSource:
    """Polls one bus. `run(sink)` until cancelled; ConfigError at start is the only raise.

    The readings of a poll are stamped with the `Stamper` given (the agent's clock), so
    untrusted time is flagged exactly as if the agent had stamped them. Nothing to acknowledge:
    a meter cannot redeliver.
    """

    def __init__(
        self,
        config: ModbusConfig,
        *,
        clock: Stamper,
        base_dir: Path | None = None,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.plans = resolve(config, base_dir=base_dir)
        self._clock = clock
        self._rng = rng
        self._log = logger or logging.getLogger(__name__)
        self._throttle = LogThrottle(self._log)
        self.stats = ModbusStats()
        self.tap: Callable[[str], None] | None = None  # `edge-agent probe`: raw answers
        self._series: dict[tuple[str, str], SeriesKey] = {}
        self.gaps = Gaps(self.name, clock=clock, logger=self._log, stats=self.stats.outages)
        for plan in self.plans:
            self.stats.units[plan.unit_id] = UnitStats()

    async def run(self, sink: Sink) -> None:
        name_foreign_logs(self.name)  # pymodbus' own log lines say which bus they are about
        cfg = self.config
        loop = asyncio.get_running_loop()
        backoff = Backoff(cfg.reconnect_initial_ms / 1000, cfg.reconnect_max_ms / 1000, self._rng)
        due = {plan.name: loop.time() for plan in self.plans}
        client: _Client | None = None
        reconnect_at = loop.time()
        try:
            while True:
                now = loop.time()
                if client is None and now >= reconnect_at:
                    client = await self._connect(sink)
                    if client is None:
                        reconnect_at = loop.time() + backoff.next_delay()
                    else:
                        backoff.reset()
                    continue
                plan = min(self.plans, key=lambda p: due[p.name])
                wait = due[plan.name] - now
                if client is None:
                    wait = min(wait, reconnect_at - now)
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                interval = plan.poll_interval_ms / 1000
                due[plan.name] = max(due[plan.name] + interval, now)
                readings, lost = await self._poll(client, plan, sink)
                if lost and client is not None:
                    self.stats.links_lost += 1
                    client.close()
                    client = None
                    reconnect_at = loop.time() + backoff.next_delay()
                add_readings(sink, readings)
        finally:
            if client is not None:
                client.close()

    def _make_client(self) -> _Client:
        cfg = self.config
        timeout = cfg.timeout_ms / 1000
        if cfg.transport == "tcp":
            return AsyncModbusTcpClient(
                cfg.host,
                port=cfg.tcp_port,
                timeout=timeout,
                retries=cfg.retries,
                reconnect_delay=0,
                name=cfg.name,
            )
        port = cfg.port
        if port is None:  # resolve() refuses this; keeps the type checker honest
            raise DeviceError(f"{cfg.name}: rtu without a port")
        return AsyncModbusSerialClient(
            port.path,
            baudrate=port.baudrate,
            bytesize=port.bytesize,
            parity=port.parity,
            stopbits=port.stopbits,
            timeout=timeout,
            retries=cfg.retries,
            reconnect_delay=0,
            name=cfg.name,
        )

    async def _connect(self, sink: Sink) -> _Client | None:
        client = self._make_client()
        try:
            async with asyncio.timeout(self.config.timeout_ms / 1000 + 5):
                ok = await client.connect()
        except (ModbusException, OSError, TimeoutError) as exc:
            ok = False
            reason = str(exc)
        else:
            reason = "pymodbus could not open it (missing, busy or not permitted)"
        if not ok:
            client.close()
            self.stats.connect_failures += 1
            cfg = self.config
            where = cfg.host if cfg.transport == "tcp" else cfg.port.path if cfg.port else ""
            if not self.gaps.down(sink, "link_lost", f"cannot connect to {where}: {reason}"):
                self._throttle.warning(
                    "connect", "%s: cannot connect to %s: %s", cfg.name, where, reason
                )
            return None
        self.stats.connects += 1
        return client

    async def _poll(
        self, client: _Client | None, plan: DevicePlan, sink: Sink
    ) -> tuple[list[Reading], bool]:
        """Readings for every point of `plan` (BAD where no value came), and whether the link
        was lost on the way."""
        unit = self.stats.units[plan.unit_id]
        loop = asyncio.get_running_loop()
        out: list[Reading] = []
        lost = client is None
        unit.polls += 1
        for req in plan.requests:
            if lost or client is None:
                out += self._bad(plan, req.points)
                continue
            if unit.down_until > loop.time():
                unit.skipped_down += 1
                out += self._bad(plan, req.points)
                continue
            unit.requests += 1
            try:
                words = await self._read(client, req)
            except _LinkLostError as exc:
                self.gaps.down(sink, "link_lost", str(exc))
                lost = True
                out += self._bad(plan, req.points)
                continue
            except DeviceExceptionError as exc:
                unit.exceptions[exc.code] = unit.exceptions.get(exc.code, 0) + 1
                unit.consecutive_failures = 0  # it answered: alive, just refusing
                self._answered(plan, sink)
                self._throttle.warning(
                    f"exc-{plan.name}", "%s/%s: %s", self.config.name, plan.name, exc
                )
                out += self._bad(plan, req.points)
                continue
            except DeviceTimeoutError as exc:
                unit.timeouts += 1
                self._failed(plan, unit, str(exc), sink)
                out += self._bad(plan, req.points)
                continue
            except DeviceError as exc:
                unit.errors += 1
                self._failed(plan, unit, str(exc), sink)
                out += self._bad(plan, req.points)
                continue
            if self.tap is not None:
                registers = " ".join(f"{w:04x}" for w in words)
                self.tap(
                    f"unit {req.unit} function {req.function} at {req.address}+{req.count}: "
                    f"{registers}"
                )
            unit.ok += 1
            unit.consecutive_failures = 0
            unit.down_until = 0.0
            self._answered(plan, sink)
            ts, bits = self._clock.now()
            for point, value in req.decode(words):
                quality = Quality.GOOD | bits
                problem = point.problem(value)
                if problem == "non_finite":
                    self.stats.non_finite += 1
                    value, quality = 0.0, Quality.BAD | bits
                elif problem is not None:  # kept as read, flagged: the raw value explains it
                    self.stats.out_of_range += 1
                    quality = Quality.BAD | bits
                out.append(Reading(self._key(plan, point), ts, value, quality))
        self.stats.readings += len(out)
        return out, lost

    def _answered(self, plan: DevicePlan, sink: Sink) -> None:
        """A unit answered: the link is up, and so is that unit."""
        self.gaps.up(sink)
        self.gaps.up(sink, part=plan.name)

    def _failed(self, plan: DevicePlan, unit: UnitStats, reason: str, sink: Sink) -> None:
        unit.consecutive_failures += 1
        if unit.consecutive_failures >= self.config.down_after_failures:
            unit.down_until = asyncio.get_running_loop().time() + self.config.down_retry_ms / 1000
            detail = (
                f"unit {plan.unit_id}: {unit.consecutive_failures} failures in a row ({reason}); "
                f"not polled for {self.config.down_retry_ms} ms"
            )
            if not self.gaps.down(sink, "unit_down", detail, part=plan.name):
                self._throttle.warning(
                    f"down-{plan.name}", "%s/%s: %s", self.config.name, plan.name, detail
                )

    async def _read(self, client: _Client, req: ReadRequest) -> list[int]:
        cfg = self.config
        budget = cfg.timeout_ms / 1000 * (cfg.retries + 1) + 1.0
        try:
            async with asyncio.timeout(budget):
                if req.function == 3:
                    rr = await client.read_holding_registers(
                        req.address, count=req.count, device_id=req.unit
                    )
                else:
                    rr = await client.read_input_registers(
                        req.address, count=req.count, device_id=req.unit
                    )
        except ConnectionException as exc:
            raise _LinkLostError(str(exc)) from exc
        except ModbusIOException as exc:
            if not client.connected:
                raise _LinkLostError(str(exc)) from exc
            raise DeviceTimeoutError(
                f"unit {req.unit}: no answer to function {req.function} at {req.address}"
            ) from exc
        except TimeoutError as exc:
            raise DeviceTimeoutError(f"unit {req.unit}: no answer within {budget:.1f} s") from exc
        except ModbusException as exc:
            raise DeviceError(f"unit {req.unit}: unusable answer: {exc}") from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise DeviceExceptionError(
                f"unit {req.unit}: exception {code} for function {req.function} "
                f"at {req.address}+{req.count}",
                code=code,
            )
        words = list(rr.registers)
        if len(words) < req.count:
            raise DeviceError(f"unit {req.unit}: {len(words)} registers, asked for {req.count}")
        return words

    def _bad(self, plan: DevicePlan, points: tuple[Point, ...]) -> list[Reading]:
        ts, bits = self._clock.now()
        self.stats.bad_readings += len(points)
        return [Reading(self._key(plan, p), ts, 0.0, Quality.BAD | bits) for p in points]

    def _key(self, plan: DevicePlan, point: Point) -> SeriesKey:
        k = (plan.name, point.metric)
        key = self._series.get(k)
        if key is None:
            key = SeriesKey(
                point.metric, point.unit, point.site, point.area, point.process, point.medium
            )
            self._series[k] = key
        return key
