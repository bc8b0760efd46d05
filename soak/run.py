"""One soak run: the demo's plant (`demo.run.Demo`) with faults injected while it runs.

On top of the demo:
- the gateway talks to the receiver through `soak.proxy.FaultProxy` (delays, resets, responses
  cut off after the receiver committed); the receiver's public URL is the proxy's, since
  gateways sign the URL they talk to;
- every serial line runs through `soak.noise.NoisyLine` (bit flips, control bytes, truncated
  frames): the MCU's and the meter's both ways, the weighbridge's towards the gateway (a damaged
  `PRINT ON` would only stop the printer, which proves nothing);
- the broker keeps its sessions on disk, so a restart loses nothing it acknowledged;
- the receiver stores in SQLite or in a fresh PostgreSQL schema;
- `soak.schedule.plan` says when to kill -9 the agent or the receiver, stop the receiver for an
  outage, or restart the broker. A killed process is started again at once (an outage after its
  length); the broker is restarted with the sensors paused, so no publish is in flight.

The ledger is the demo's (`demo.summary`): nothing duplicated or made up, anywhere. Lost: the MCU
and MQTT sensors redeliver until the gateway acknowledged a commit, so they lose nothing; the
meter and the weighbridge cannot redeliver, so each kill -9 of the agent may lose what it had
not yet committed (at most one poll of the meter and one ticket), and each answer or line the
noise damaged on its way to the gateway is lost (Modbus' CRC and the ticket's checksum refuse
it): the verdict allows exactly that much (`allowed_missing`), and nothing duplicated or made
up. Readings the gateway reported dropped (buffer full) must be 0 here. The
agent must never exit unless the soak killed it (`_check_children`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo import drain, summary
from demo.errors import DemoError
from demo.plant import AREAS, DEVICE_ID, agent_toml
from demo.procs import tcp_open, wait_until
from demo.run import SETTLE_S, Demo, Options, say
from soak.noise import Dirt, NoisyLine
from soak.proxy import FaultProxy
from soak.schedule import Fault, Kind, plan

TICKET_UNITS = 2  # the ledger counts a ticket as an event plus a reading
# The lines that run through a noisy relay: Links field -> the device the ledger names.
NOISY = {"mcu": "mcu", "bus": "meter", "weighbridge": "weighbridge"}
# A damaged Modbus answer loses that poll's values; the poll after it may be lost too while the
# gateway's framer resynchronises after a truncated frame.
POLLS_PER_DAMAGED_ANSWER = 2
# The meter answers once a second and the weighbridge prints a line every few seconds, far fewer
# chunks than the MCU's stream: their lines are a little dirtier, and each gets one sure flip
# early, so that even a short run damages every line.
LINE_DIRT = {
    "mcu": Dirt(sure=5),
    "meter": Dirt(flip=0.02, control=0.02, truncate=0.01, sure=5),
    "weighbridge": Dirt(flip=0.05, control=0.05, truncate=0.05, sure=2),
}


@dataclass(frozen=True)
class SoakOptions:
    demo: Options
    store: str  # "sqlite" or a postgresql:// URL
    seed: int
    outage_max_s: float
    dirt: Dirt = LINE_DIRT["mcu"]


class Soak(Demo):
    def __init__(self, options: SoakOptions) -> None:
        super().__init__(options.demo)
        self.s = options
        self.proxy: FaultProxy | None = None
        self.noise: dict[str, NoisyLine] = {}
        self.done: collections.Counter[str] = collections.Counter()
        self.receiver_down = False
        self.drain_timeout_s = 120.0
        self.plan: list[Fault] = []
        self.final_faults: dict[str, Any] | None = None
        # (from_ms, to_ms) while no agent had the weighbridge's port open: after a kill -9 until
        # the new agent opened it. A ticket printer does not wait for a reader, and opening a
        # serial port flushes what the line held, so tickets printed then are lost to any
        # gateway; to_ms is None while the window is open.
        self.unplugged: list[tuple[int, int | None]] = []

    # -- set-up ------------------------------------------------------------------------------

    def _receiver_argv(self, cloud: Path) -> list[str | Path]:
        argv = super()._receiver_argv(cloud)
        if self.s.store != "sqlite":
            i = argv.index("--db")
            argv[i + 1] = self.s.store
            self.store_text = "PostgreSQL (a schema of its own)"
        assert self.proxy is not None
        return [*argv, "--public-url", f"http://127.0.0.1:{self.proxy.port}"]

    def _start_receiver(self) -> None:
        assert self.o.port is not None  # chosen by the caller, so the proxy can point at it
        self.proxy = FaultProxy(self.o.port, seed=self.s.seed)
        self.proxy.faults = False  # enrolment is an operator's one-shot step
        self.proxy.__enter__()
        super()._start_receiver()
        self.url = f"http://127.0.0.1:{self.proxy.port}"  # what gateways and edgectl talk to
        say(f"  proxy      faults between gateway and receiver on {self.url}")
        self.broker_persistence = self.run_dir / "mqtt"

    def _write_config(self, mqtt_port: int | None) -> None:
        self.mqtt_port = mqtt_port
        links = dataclasses.replace(self.links, **{f: self._noisy(f) for f in NOISY})
        self.config.write_text(
            agent_toml(
                cloud_url=self.url,
                links=links,
                metrics_port=self.metrics_port,
                mqtt_port=mqtt_port,
            ),
            encoding="utf-8",
        )

    def _start_devices(self, mqtt_port: int | None) -> None:
        super()._start_devices(mqtt_port)
        for i, (field, device) in enumerate(NOISY.items()):
            line = NoisyLine(
                str(getattr(self.links, field)),
                str(self._noisy(field)),
                dirt=self.s.dirt if device == "mcu" else LINE_DIRT[device],
                seed=self.s.seed + i,
                to_device=device != "weighbridge",
            )
            line.start()
            self.noise[device] = line
        say(f"  noise      every serial line through a noisy relay (*-noisy), MCU: {self.s.dirt}")

    def _noisy(self, field: str) -> Path:
        link: Path = getattr(self.links, field)
        return link.with_name(f"{link.name}-noisy")

    # -- the faults --------------------------------------------------------------------------

    def _progress(self) -> None:
        seconds = self.o.seconds or 60.0
        self.plan = plan(
            seconds,
            seed=self.s.seed,
            outage_max_s=self.s.outage_max_s,
            broker=self.mqtt_port is not None,
        )
        say(f"Soaking for {seconds:g} s, {len(self.plan)} faults planned (seed {self.s.seed})")
        assert self.proxy is not None
        self.proxy.faults = True
        t0 = time.monotonic()
        for fault in self.plan:
            self._idle_until(t0 + fault.at_s)
            if self.signals.count:
                break
            started = time.monotonic()
            self._inject(fault)
            self.done[fault.kind.value] += 1
            say(
                f"[{started - t0:5.1f} s] {fault.kind.value}"
                + (f" for {fault.down_s:g} s" if fault.down_s else "")
                + f", back after {time.monotonic() - started:.1f} s"
            )
        self._idle_until(t0 + seconds)
        self.proxy.faults = False  # the drain is checked for exactness, not for speed

    def _idle_until(self, when: float) -> None:
        while self.signals.count == 0 and time.monotonic() < when:
            self._check_children()
            self._watch_weighbridge()
            time.sleep(0.1)

    def _watch_weighbridge(self) -> None:
        """Close the open unplugged window once the agent holds the weighbridge's port."""
        if not self.unplugged or self.unplugged[-1][1] is not None or self.agent is None:
            return
        port = os.path.realpath(self._noisy("weighbridge"))
        fds = Path(f"/proc/{self.agent.pid}/fd")
        try:
            held = any(os.path.realpath(fd) == port for fd in fds.iterdir())
        except OSError:  # the agent is between exit and start, or the fd went meanwhile
            return
        if held:
            self.unplugged[-1] = (self.unplugged[-1][0], _now_ms())

    def _inject(self, fault: Fault) -> None:
        assert self.agent is not None
        assert self.receiver is not None
        if fault.kind is Kind.KILL_AGENT:
            if not self.unplugged or self.unplugged[-1][1] is not None:  # else still open
                self.unplugged.append((_now_ms(), None))
            self.agent.stop(sig=signal.SIGKILL)
            self.agent.start()
        elif fault.kind is Kind.KILL_RECEIVER:
            self.receiver.stop(sig=signal.SIGKILL)
            self.receiver.start()
            self._wait_for_receiver()
        elif fault.kind is Kind.OUTAGE:
            self.receiver_down = True
            self.receiver.stop(sig=signal.SIGKILL)
            self._idle_until(time.monotonic() + fault.down_s)
            self.receiver.start()
            self._wait_for_receiver()
            self.receiver_down = False
        elif fault.kind is Kind.BROKER_RESTART:
            self._restart_broker()

    def _restart_broker(self) -> None:
        assert self.broker is not None
        assert self.devices is not None
        assert self.mqtt_port
        self.devices.send(signal.SIGUSR2)  # pause the sensors
        wait_until(
            "the sensors to pause",
            lambda: bool(self._device_status().get("mqtt", {}).get("quiet")),
            timeout_s=30,
            child=self.devices,
            interrupted=lambda: self.signals.count > 0,
        )
        self.broker.stop()  # SIGTERM: Mosquitto saves its sessions and queues, then exits
        if "Error saving" in self.broker.log_tail(20):
            # It would come back without our session and drop what is published meanwhile: a
            # loss of the harness's making, not the gateway's.
            raise DemoError(f"mosquitto could not save its sessions (log {self.broker.log})")
        self.broker.start()
        port = self.mqtt_port
        wait_until(
            "mosquitto",
            lambda: tcp_open(port),
            timeout_s=20,
            child=self.broker,
            interrupted=lambda: self.signals.count > 0,
        )
        self.devices.send(signal.SIGUSR2)  # resume

    def _check_children(self) -> None:
        """Every child must be running, except the receiver during an outage; the agent above
        all: it never exits on its own, whatever it is fed."""
        for child in (self.receiver, self.broker, self.devices, self.agent):
            if child is None or (child is self.receiver and self.receiver_down):
                continue
            if not child.running():
                code = child.proc.poll() if child.proc is not None else None
                raise DemoError(
                    f"{child.name} exited by itself with code {code} (log {child.log}):\n"
                    + child.log_tail(20)
                )

    def _handed_over(
        self, status: dict[str, Any], samples: drain.Samples, quiet_at: float
    ) -> bool | None:
        """The demo compares the agent's counters with the devices' totals, but a restarted
        agent counts from zero: here, the devices have been quiet for a while, the agent has
        committed all it took in, and the receiver holds every MQTT reading the sensors had
        acknowledged (a freshly restarted agent may not have reconnected to the broker yet, and
        the broker still holds them for it)."""
        if time.monotonic() < quiet_at + SETTLE_S:
            return False
        committed = drain.committed_all(samples)
        if not committed:
            return committed
        produced = 2 * int(status.get("mqtt", {}).get("messages", 0))
        if produced:
            try:
                counts = self.api.counts_by_area(DEVICE_ID, AREAS, *self._window())
            except DemoError:
                return False
            if counts.get("mqtt", 0) < produced:
                return False
        return True

    # -- the verdict -------------------------------------------------------------------------

    def _adjust(self, verdict: summary.Verdict) -> None:
        kills = self.done[Kind.KILL_AGENT.value]
        report = self._report()
        points = len(report.get("meter", {}).get("served", {}))
        answers = self._damaged("meter", "damaged_chunks_to_gateway")
        lines = self._damaged("weighbridge", "damaged_lines_to_gateway")
        lines += self._damaged("weighbridge", "joined_lines_to_gateway")
        unheard = self._printed_while_unplugged(report)
        allowance = {
            "meter": (kills + POLLS_PER_DAMAGED_ANSWER * answers) * points,
            "weighbridge": (kills + lines + unheard) * TICKET_UNITS,
        }
        why = {
            "meter": f"{answers} answers damaged by the noise (each up to "
            f"{POLLS_PER_DAMAGED_ANSWER} polls)",
            "weighbridge": f"{lines} ticket lines damaged by the noise (or joined to a damaged "
            f"one by a lost line end), and {unheard} tickets "
            "printed while no agent had the port open",
        }
        for device in verdict.devices:
            device.allowed_missing = allowance.get(device.device, 0)
            if device.allowed_missing:
                device.notes.append(
                    f"up to {device.allowed_missing} may be lost: {kills} kill -9 of the agent, "
                    "each losing at most what it had not committed (one poll, one ticket), and "
                    f"{why[device.device]}"
                )

    def _printed_while_unplugged(self, report: dict[str, Any]) -> int:
        printed = [int(t[4]) for t in report.get("weighbridge", {}).get("printed", [])]
        end = _now_ms()
        return sum(
            any(a <= ms <= (b if b is not None else end) for a, b in self.unplugged)
            for ms in printed
        )

    def _damaged(self, device: str, what: str) -> int:
        counts = self.faults()["serial_noise"].get(device, {})
        return int(counts.get(what, 0))

    def _report(self) -> dict[str, Any]:
        try:
            data = json.loads((self.run_dir / "devices" / "report.json").read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return dict(data)

    def faults(self) -> dict[str, Any]:
        """What this run did to the plant, for the soak's own summary."""
        if self.final_faults is not None:
            return self.final_faults
        return {
            "planned": len(self.plan),
            "done": dict(self.done),
            "proxy": dict(self.proxy.counts) if self.proxy else {},
            "serial_noise": {d: dict(line.counts) for d, line in self.noise.items()},
            "weighbridge_unplugged_ms": [
                (b if b is not None else _now_ms()) - a for a, b in self.unplugged
            ],
        }

    def _stop_all(self) -> None:
        super()._stop_all()
        self.final_faults = self.faults()
        for line in self.noise.values():
            line.close()
        self.noise = {}
        if self.proxy is not None:
            self.proxy.__exit__(None, None, None)
            self.proxy = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
