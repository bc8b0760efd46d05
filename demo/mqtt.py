"""MQTT for the demo: a private Mosquitto on a free loopback port, and sensors publishing to it.

The broker runs from a config file in the run directory (no persistence, anonymous, loopback
only) and logs to stderr (unbuffered, unlike stdout into a file), which the demo keeps as
`mqtt/broker.log`; with `log_type subscribe` every subscription shows there as
`<time>: <client id> <qos> <filter>`.

The sensors (run inside the devices process) publish one JSON message per sensor per interval,
QoS 1, each carrying its own time: `{"ts": <epoch ms>, "temperature": 21.3, "humidity": 48.0}` on
`demo-plant/hall-b/<sensor>`. They start only once the gateway's client has subscribed (seen in
the broker's log): before that a broker drops messages nobody asked for, and the demo would
count them as produced. "Produced" is a message the broker acknowledged (PUBACK): each is two
readings, identified by (metric, ts).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from demo.plant import MQTT_CLIENT_ID, MQTT_SENSORS, MQTT_TOPIC_PREFIX

_SEARCH = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")


def find_mosquitto() -> str | None:
    """The mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for d in _SEARCH:
        candidate = Path(d) / "mosquitto"
        if candidate.is_file():
            return str(candidate)
    return None


def broker_config(port: int, *, persistence_dir: Path | None = None) -> str:
    """Loopback only, anonymous. With `persistence_dir`, sessions and queued messages are saved
    there when the broker stops, so a restart keeps them (the soak restarts the broker).

    `user`: Mosquitto started as root drops to the `mosquitto` user, which cannot write the run
    directory we made, and then loses every session on a restart ("Error saving in-memory
    database"); it runs as whoever starts it instead (for others the option changes nothing)."""
    keep = (
        "persistence false"
        if persistence_dir is None
        else f"persistence true\npersistence_location {persistence_dir}/"
    )
    return f"""# Mosquitto for `make demo`: loopback only, anonymous.
listener {port} 127.0.0.1
allow_anonymous true
user {getpass.getuser()}
{keep}
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
"""


def subscribed(log: Path, client_id: str) -> bool:
    """Whether the broker's log shows a subscription by `client_id`."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1] == client_id and parts[2] in ("0", "1", "2"):
            return True
    return False


@dataclass
class Sensors:
    """Temperature/humidity sensors publishing every `interval_s`; see the module docstring."""

    port: int
    broker_log: Path
    interval_s: float = 1.0
    acked: list[tuple[str, int, float]] = field(default_factory=list)  # (metric, ts_ms, value)
    messages: int = 0
    waiting: bool = True
    stopped: bool = False
    paused: bool = False  # the soak pauses publishing while it restarts the broker
    in_flight: int = 0
    publishing: bool = False  # in the middle of a round of messages
    reconnects: int = 0

    @property
    def quiet(self) -> bool:
        """Paused, and no round of messages under way."""
        return self.paused and not self.publishing

    def stop(self) -> None:
        self.stopped = True

    async def run(self) -> None:
        # Nothing to wait on but the broker's log file growing.
        while not subscribed(self.broker_log, MQTT_CLIENT_ID):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        self.waiting = False
        t0 = time.monotonic()
        while not self.stopped:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier="demo-sensors"
                ) as client:
                    while not self.stopped:
                        if not self.paused:
                            self.publishing = True
                            ts = time.time_ns() // 1_000_000
                            for i, name in enumerate(MQTT_SENSORS):
                                t = time.monotonic() - t0 + 10 * i
                                await self._publish(client, name, ts, t)
                            self.publishing = False
                        await asyncio.sleep(self.interval_s)
            except aiomqtt.MqttError:
                self.publishing = False
                # The broker went away (the soak restarts it while paused, so nothing was in
                # flight): a message only counts as produced once acknowledged, so none is lost.
                self.reconnects += 1
                await asyncio.sleep(0.2)

    async def _publish(self, client: aiomqtt.Client, name: str, ts: int, t: float) -> None:
        temperature = round(21.0 + 2.0 * math.sin(t / 30), 2)
        humidity = round(48.0 + 5.0 * math.cos(t / 40), 1)
        payload = json.dumps({"ts": ts, "temperature": temperature, "humidity": humidity})
        self.in_flight += 1
        try:
            async with asyncio.timeout(10):
                await client.publish(f"{MQTT_TOPIC_PREFIX}/{name}", payload, qos=1)
        finally:
            self.in_flight -= 1
        self.messages += 1
        self.acked.append((f"{name}.temperature", ts, temperature))
        self.acked.append((f"{name}.humidity", ts, humidity))
