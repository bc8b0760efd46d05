"""The demo from start to summary.

Start, in order: the receiver (`edge-cloud serve` on SQLite in the run directory, a free loopback
port), the gateway's enrolment (`edgectl token create`, the agent config, `edgectl enroll`, which
keeps that config and checks it is for this device and receiver), the MQTT broker (when
Mosquitto is installed and the agent accepts an MQTT source), the emulated devices, the agent.
Then progress lines until the time is up or Ctrl-C.

Stop (the same after the time is up and after the first Ctrl-C):
1. the devices stop producing (`demo.devices`, SIGUSR1); the demo waits until the MCU holds no
   unacknowledged reading and the sensors have no publish in flight;
2. drain (`demo.drain`): the agent has received and committed everything the devices sent (its
   metrics endpoint), and then `edge-agent status --json` shows no event and no reading taken
   before step 1 left in its buffer (the switched-off meter keeps adding BAD markers, which are
   not part of the count); steps 1-2 are bounded by `DRAIN_TIMEOUT_S`;
3. the agent gets SIGTERM (it commits what it holds and exits 0), then the devices, then the
   broker; the stored data is read through the query API; then the receiver stops.
A second Ctrl-C skips the waiting of steps 1-2: the processes are stopped at once, in the same
order. Every child is in a process group of its own and dies with the demo (`demo.procs`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo import drain, summary
from demo.cloud import Point, ReceiverApi
from demo.errors import DemoError
from demo.mqtt import broker_config, find_mosquitto
from demo.plant import (
    AREAS,
    DEVICE_ID,
    MCU_CHANNELS,
    MQTT_SOURCE_INDEX,
    SOURCES,
    TICKET_KIND,
    Links,
    agent_toml,
)
from demo.procs import (
    Child,
    Interrupts,
    check_port_free,
    free_port,
    http_ok,
    run_once,
    tcp_open,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MARKER = ".tierless-demo"
DRAIN_TIMEOUT_S = 30.0
SETTLE_S = 2.0  # without the agent's metrics: time for the last answers to be committed


@dataclass(frozen=True)
class Options:
    seconds: float | None
    run_dir: Path
    port: int | None
    progress_s: float
    summary_json: Path | None
    mqtt: bool
    mcu_rate_hz: float = 2.0
    ticket_interval_s: float = 3.0


def say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.run_dir = options.run_dir.resolve()
        self.signals = Interrupts()
        self.receiver: Child | None = None
        self.broker: Child | None = None
        self.devices: Child | None = None
        self.agent: Child | None = None
        self.skipped: dict[str, str] = {}
        self.started_ms = self.stopped_ms = 0
        self.mqtt_port: int | None = None
        self.mosquitto: str | None = None
        self._events: list[dict[str, Any]] = []
        self.owns_dir = False
        self.drain_timeout_s = DRAIN_TIMEOUT_S
        self.broker_persistence: Path | None = None  # the soak keeps the broker's sessions

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> int:
        self.signals.install()
        try:
            try:
                self._check_binaries()
                self._prepare_dir()
                self._start()
            except KeyboardInterrupt:
                say("interrupted while starting; stopping what was started")
                return 130
            self._progress()
            drained = self._stop_sources_and_drain()
            stored, chain = self._stop_and_collect()
            return self._summary(stored, chain, drained=drained)
        finally:
            self._stop_all()  # after a failure; children already stopped return at once
            if self.owns_dir:
                (self.run_dir / "demo.pid").unlink(missing_ok=True)

    # -- set-up -----------------------------------------------------------------------------

    def _check_binaries(self) -> None:
        for name in ("edge-cloud", "edgectl", "edge-agent"):
            if not (BIN / name).exists():
                raise DemoError(
                    f"{name} is not installed beside {sys.executable}: run `make demo` (it builds "
                    ".venv and installs the project), or pip install -e '.[dev]'"
                )

    def _prepare_dir(self) -> None:
        d = self.run_dir
        if d.exists() and any(d.iterdir()) and not (d / MARKER).exists():
            raise DemoError(f"{d} exists and is not a demo run directory; pick another with --dir")
        if (d / "demo.pid").exists():
            try:
                pid = int((d / "demo.pid").read_text(encoding="utf-8"))
                os.kill(pid, 0)
            except (ValueError, OSError):
                pass
            else:
                if pid != os.getpid():
                    raise DemoError(f"another demo (pid {pid}) is running in {d}; stop it first")
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        (d / MARKER).write_text("a `make demo` run directory, wiped by the next run\n")
        (d / "demo.pid").write_text(str(os.getpid()))
        self.owns_dir = True

    def _start(self) -> None:
        d = self.run_dir
        say(f"Tierless demo: everything runs on this machine; files in {_rel(d)}/")
        self._start_receiver()
        mqtt_port = self._mqtt_port()
        gateway = d / "gateway"
        gateway.mkdir(mode=0o700)
        self.links = Links.under(d / "dev")
        self.metrics_port = free_port()
        self.config = gateway / "agent.toml"
        self._enrol(gateway, mqtt_port)  # leaves self.mqtt_port None if the agent refuses MQTT
        if self.mqtt_port is not None:
            self._start_broker(self.mqtt_port)
        self._start_devices(self.mqtt_port)
        self.agent = Child(
            "agent",
            [BIN / "edge-agent", "run", "--config", self.config],
            gateway / "agent.log",
            cwd=gateway,
        )
        self.agent.start()
        wait_until(
            "the agent's buffer",
            lambda: (gateway / "buffer.db").exists(),
            timeout_s=20,
            child=self.agent,
            interrupted=lambda: self.signals.count > 0,
        )
        self.started_ms = time.time_ns() // 1_000_000
        say(
            f"  agent      edge-agent run --config {_rel(self.config)} (pid {self.agent.pid}), "
            f"metrics http://127.0.0.1:{self.metrics_port}/metrics"
        )
        say()
        # The dashboard takes a token once from ?token= and keeps it in a cookie
        # (cloud.apps.dashboard).
        say(f"dashboard:   {self.api.url}/?token={urllib.parse.quote(self.read_token, safe='')}")
        say(
            f"             (the read token of this demo only; also in {_rel(self.read_token_file)})"
        )
        say()

    def _receiver_argv(self, cloud: Path) -> list[str | Path]:
        """`edge-cloud serve` on the demo's store; `self.url` is where gateways send."""
        db = cloud / "tierless-cloud.db"
        self.store_text = f"SQLite {_rel(db)}"
        serve: list[str | Path] = [BIN / "edge-cloud", "serve", "--db", f"sqlite:///{db}"]
        return [*serve, "--port", str(self.port), "--log-level", "warning"]

    def _start_receiver(self) -> None:
        self.port = self.o.port or free_port()
        check_port_free(self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        cloud = self.run_dir / "cloud"
        cloud.mkdir(exist_ok=True)
        argv = self._receiver_argv(cloud)
        self.receiver = Child("receiver", argv, cloud / "receiver.log", cwd=cloud)
        self.receiver.start()
        self._wait_for_receiver()
        self.admin_token_file = cloud / "tierless-admin.token"
        self.read_token_file = cloud / "tierless-read.token"
        self.read_token = self.read_token_file.read_text(encoding="ascii").strip()
        self.api = ReceiverApi(f"http://127.0.0.1:{self.port}", self.read_token)
        pid = self.receiver.pid
        say(f"  receiver   edge-cloud serve, {self.url}, {self.store_text} (pid {pid})")

    def _wait_for_receiver(self) -> None:
        assert self.receiver is not None
        wait_until(
            "the receiver",
            lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz"),
            timeout_s=20,
            child=self.receiver,
            interrupted=lambda: self.signals.count > 0,
        )

    def _mqtt_port(self) -> int | None:
        if not self.o.mqtt:
            self.skipped["mqtt"] = "--no-mqtt given"
            return None
        self.mosquitto = find_mosquitto()
        if self.mosquitto is None:
            self.skipped["mqtt"] = "no mosquitto binary found (apt install mosquitto)"
            return None
        return free_port()

    def _enrol(self, gateway: Path, mqtt_port: int | None) -> None:
        token = self.run_dir / "cloud" / "gw-demo-01.token"
        self._edgectl(
            "token", "create", "--device", DEVICE_ID, "--ttl", "1h", "--out", token,
            "--cloud", self.url, "--admin-token-file", self.admin_token_file,
        )  # fmt: skip
        self._write_config(mqtt_port)
        self._edgectl(
            "enroll", "--dir", gateway, "--token-file", token, "--cloud", self.url,
            "--device", DEVICE_ID,
        )  # fmt: skip
        token.unlink()
        if mqtt_port is not None:
            problem = self._mqtt_refused()
            if problem:
                self.skipped["mqtt"] = f"edge-agent does not accept an MQTT source yet ({problem})"
                self._write_config(None)
        check = run_once([BIN / "edge-agent", "check-config", self.config], timeout_s=30)
        if check.returncode != 0:
            raise DemoError(f"edge-agent check-config refused the demo's config:\n{check.stderr}")
        say(
            f"  gateway    {DEVICE_ID}: edgectl token create + enroll (key "
            f"{_rel(self.config.parent / 'device.key')}), config {_rel(self.config)}"
        )

    def _write_config(self, mqtt_port: int | None) -> None:
        self.mqtt_port = mqtt_port
        self.config.write_text(
            agent_toml(
                cloud_url=self.url,
                links=self.links,
                metrics_port=self.metrics_port,
                mqtt_port=mqtt_port,
            ),
            encoding="utf-8",
        )

    def _mqtt_refused(self) -> str | None:
        """The first check-config problem of the MQTT source, if the agent refuses it."""
        check = run_once([BIN / "edge-agent", "check-config", self.config], timeout_s=30)
        if check.returncode == 0:
            return None
        where = f"sources[{MQTT_SOURCE_INDEX}]"
        for line in check.stderr.splitlines():
            if where in line:
                return line.split(f"{self.config.name}: ", 1)[-1]
        return None  # refused for another reason: reported by the full check

    def _edgectl(self, *args: object) -> None:
        done = run_once([BIN / "edgectl", *map(str, args)], timeout_s=60)
        with open(self.run_dir / "edgectl.log", "a", encoding="utf-8") as log:
            log.write(f"$ edgectl {' '.join(map(str, args))}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise DemoError(f"edgectl {args[0]} failed: {done.stderr.strip()}")

    def _start_broker(self, port: int) -> None:
        mqtt = self.run_dir / "mqtt"
        mqtt.mkdir()
        conf = mqtt / "mosquitto.conf"
        conf.write_text(
            broker_config(port, persistence_dir=self.broker_persistence), encoding="utf-8"
        )
        self.broker_log = mqtt / "broker.log"
        binary = self.mosquitto or "mosquitto"
        self.broker = Child("mosquitto", [binary, "-c", conf], self.broker_log, cwd=mqtt)
        self.broker.start()
        wait_until(
            "mosquitto",
            lambda: tcp_open(port),
            timeout_s=10,
            child=self.broker,
            interrupted=lambda: self.signals.count > 0,
        )
        say(f"  broker     mosquitto on mqtt://127.0.0.1:{port} (pid {self.broker.pid})")

    def _start_devices(self, mqtt_port: int | None) -> None:
        argv: list[str | Path] = [sys.executable, "-m", "demo.devices", "--dir", self.run_dir]
        argv += ["--mcu-rate-hz", str(self.o.mcu_rate_hz)]
        argv += ["--ticket-interval-s", str(self.o.ticket_interval_s)]
        if mqtt_port is not None:
            argv += ["--mqtt-port", str(mqtt_port), "--mqtt-log", str(self.broker_log)]
        self.devices = Child("devices", argv, self.run_dir / "devices.log", cwd=ROOT)
        self.devices.start()
        wait_until(
            "the emulated devices",
            lambda: bool(self._device_status().get("ready")),
            timeout_s=20,
            child=self.devices,
            interrupted=lambda: self.signals.count > 0,
        )
        links = self.links
        say(f"  devices    emulated, one process (pid {self.devices.pid}):")
        say(f"               energy meter   Eastron SDM630, Modbus RTU unit 1 on {_rel(links.bus)}")
        say(
            f"               MCU node       our firmware, 2 channels at {self.o.mcu_rate_hz:g} Hz "
            f"on {_rel(links.mcu)}"
        )
        say(
            f"               weighbridge    a ticket every {self.o.ticket_interval_s:g} s on "
            f"{_rel(links.weighbridge)}"
        )
        if mqtt_port is not None:
            say("               MQTT sensors   3 temperature/humidity sensors, QoS 1, every 1 s")
        else:
            say(f"               MQTT sensors   skipped: {self.skipped['mqtt']}")

    # -- running ----------------------------------------------------------------------------

    def _progress(self) -> None:
        until = None if self.o.seconds is None else time.monotonic() + self.o.seconds
        if until is None:
            say("Running until Ctrl-C. Stored in the cloud so far:")
        else:
            say(f"Running for {self.o.seconds:g} s (Ctrl-C stops earlier). Stored in the cloud:")
        t0 = time.monotonic()
        next_line = t0 + self.o.progress_s
        while self.signals.count == 0 and (until is None or time.monotonic() < until):
            self._check_children()
            time.sleep(0.1)
            if time.monotonic() >= next_line:
                next_line += self.o.progress_s
                say(f"[{time.monotonic() - t0:4.0f} s] {self._progress_line()}")

    def _check_children(self) -> None:
        for child in (self.receiver, self.broker, self.devices, self.agent):
            if child is not None and not child.running():
                raise DemoError(
                    f"{child.name} exited unexpectedly (log {_rel(child.log)}):\n"
                    + child.log_tail()
                )

    def _progress_line(self) -> str:
        try:
            counts = self.api.counts_by_area(DEVICE_ID, AREAS, *self._window())
        except DemoError as exc:
            return f"(receiver not answering: {exc})"
        events = len(self.api.events(DEVICE_ID, TICKET_KIND, *self._window()))
        parts = [f"meter {counts.get('meter', 0)}", f"mcu {counts.get('mcu', 0)}"]
        parts.append(f"weighbridge {counts.get('weighbridge', 0)} (+ {_n(events, 'ticket')})")
        if self.mqtt_port is not None:
            parts.append(f"mqtt {counts.get('mqtt', 0)}")
        held = drain.backlog(BIN / "edge-agent", self.config)
        tail = "" if held is None else f"   | gateway backlog {held.readings}"
        return "readings " + " · ".join(parts) + tail

    def _device_status(self) -> dict[str, Any]:
        try:
            data = json.loads((self.run_dir / "devices" / "status.json").read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return dict(data)

    # -- stopping ---------------------------------------------------------------------------

    def _stop_sources_and_drain(self) -> bool:
        """Steps 1-2 of the module docstring (`demo.drain`); whether the buffer was drained."""
        if self.devices is None:
            return False
        if self.signals.term:
            say("\nSIGTERM: stopping at once")
        elif self.signals.count:
            say("\nCtrl-C: stopping (press it again to stop without draining)")
        say("stopping the devices; draining the gateway's buffer to the receiver …")
        self.devices.send(signal.SIGUSR1)
        stop_ms = self.stopped_ms = time.time_ns() // 1_000_000
        t0 = time.monotonic()
        deadline = t0 + self.drain_timeout_s
        metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        quiet_at: float | None = None
        handed = False
        while True:
            if self.signals.hurry:
                say("  not waiting for the drain")
                return False
            if time.monotonic() > deadline:
                say(f"  gave up draining after {self.drain_timeout_s:.0f} s")
                return False
            self._check_children()
            status = self._device_status()
            if quiet_at is None:
                if status and drain.devices_quiet(status):
                    quiet_at = time.monotonic()
            elif not handed:
                samples = drain.scrape(metrics_url)
                verdict = None if samples is None else self._handed_over(status, samples, quiet_at)
                # Without the agent's metrics, a fixed wait stands in for condition 2.
                handed = verdict or (verdict is None and time.monotonic() > quiet_at + SETTLE_S)
            else:
                asked_ms = time.time_ns() // 1_000_000
                held = drain.backlog(BIN / "edge-agent", self.config)
                if held is not None and drain.uploaded(held, stop_ms=stop_ms, asked_ms=asked_ms):
                    left = f" ({held.readings} BAD markers of the silent meter left)"
                    say(
                        f"  drained in {time.monotonic() - t0:.1f} s{left if held.readings else ''}"
                    )
                    return True
            time.sleep(0.05)

    def _handed_over(
        self, status: dict[str, Any], samples: drain.Samples, quiet_at: float
    ) -> bool | None:
        """Condition 2 of the drain (`demo.drain`)."""
        return drain.handed_over(status, samples, SOURCES)

    def _stop_and_collect(self) -> tuple[dict[str, dict[str, list[Point]]], dict[str, Any]]:
        codes = {}
        for child in (self.agent, self.devices, self.broker):
            if child is not None:
                codes[child.name] = child.stop()
        if codes.get("agent") not in (0, None):
            say(f"  the agent exited with {codes['agent']} (see {_rel(self.run_dir)}/gateway)")
        stored = self._collect()
        device = self.api.device(DEVICE_ID) or {}
        dropped = device.get("dropped", {})
        chain = {
            "batches": device.get("batches", 0),
            "gaps": device.get("gaps", 0),
            "forks": device.get("forks", 0),
            "dropped": sum(int(v) for v in dropped.values()),
        }
        if self.receiver is not None:
            codes["receiver"] = self.receiver.stop()
        say("stopped: agent, devices" + (", broker" if self.broker else "") + ", receiver")
        return stored, chain

    def _collect(self) -> dict[str, dict[str, list[Point]]]:
        stored: dict[str, dict[str, list[Point]]] = {d: {} for d in AREAS.values()}
        start, end = self._window()
        for s in self.api.series(DEVICE_ID):
            device = AREAS.get(s.area)
            if device is not None:
                stored[device][s.metric] = self.api.readings(s.id, start, end)
        self._events = self.api.events(DEVICE_ID, TICKET_KIND, start, end)
        return stored

    def _stop_all(self) -> None:
        for child in (self.agent, self.devices, self.broker, self.receiver):
            if child is not None:
                child.stop(timeout_s=10)

    # -- the verdict ------------------------------------------------------------------------

    def _summary(
        self, stored: dict[str, dict[str, list[Point]]], chain: dict[str, Any], *, drained: bool
    ) -> int:
        try:
            report = json.loads((self.run_dir / "devices" / "report.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise DemoError(
                f"the devices left no report ({exc}); see {_rel(self.run_dir)}"
            ) from exc
        seconds = ((self.stopped_ms or time.time_ns() // 1_000_000) - self.started_ms) / 1000
        verdict = summary.judge(
            report, stored, self._events, MCU_CHANNELS, self.skipped, chain, drained=drained
        )
        verdict.seconds = round(seconds, 1)
        self._adjust(verdict)
        say()
        say(
            f"Summary after {seconds:.0f} s: what the emulated devices produced (their own counts)"
            " vs what the receiver stored (read back through its query API)"
        )
        for line in verdict.lines():
            say(line)
        if self.o.summary_json is not None:
            self.o.summary_json.write_text(json.dumps(verdict.as_json(), indent=2) + "\n")
        say(f"files of this run: {_rel(self.run_dir)}/ (logs, the receiver's database)")
        if self.signals.count and not drained:
            return 130
        return 0 if verdict.ok else 1

    def _adjust(self, verdict: summary.Verdict) -> None:
        """A hook for the soak, which allows the loss window of the faults it injected."""

    def _window(self) -> tuple[int, int]:
        """The query range: from well before the devices started (the MCU's first readings
        are older than the agent) to well after now."""
        return self.started_ms - 600_000, time.time_ns() // 1_000_000 + 3_600_000


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
