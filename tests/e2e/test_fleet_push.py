"""A group push to 50 gateways with real processes: `edge-cloud serve` and `edgectl`; the 50
gateways are lightweight stand-ins (signed HTTP clients, not agents) that enrol, upload a
batch, report health, learn the desired version from the acknowledgement, fetch the config,
verify the cloud's signature with the key they pinned at enrolment, and report it running. The
push completes and `edgectl config status` shows each of them."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest

from tests.cloud.helpers import Gateway
from tests.cloud.receiver.test_health import report
from tests.provisioning.conftest import Edgectl, RealReceiver
from wire.http import Enrolled, HealthAck
from wire.keys import b64url_decode, public_key_from_raw
from wire.remoteconfig import CONFIG_PATH, SignedConfig, config_sha256, verify_config

pytestmark = pytest.mark.e2e
GATEWAYS = 50
CONFIG = '[clock]\nsync_check = "assume_synced"\n\n[[sources]]\ntype = "test"\nrate_hz = 5\n'


class SimulatedGateway:
    def __init__(self, name: str, receiver: RealReceiver, client: httpx.Client) -> None:
        self.gw = Gateway(name, base_url=receiver.url)
        self.client = client
        headers, body = self.gw.enroll_request(receiver.token(name))
        r = client.post("/v1/enroll", content=body, headers=headers)
        assert r.status_code == 201, r.text
        enrolled = msgspec.json.decode(r.content, type=Enrolled)
        self.pinned = public_key_from_raw(b64url_decode(enrolled.config_key))
        self.version = 0

    def upload(self) -> None:
        headers, body = self.gw.batch_request(self.gw.next_batch())  # series tagged site=plant-1
        assert self.client.post("/v1/batches", content=body, headers=headers).status_code == 200

    def report(self, **fields: object) -> HealthAck:
        body = json.loads(msgspec.json.encode(report(self.gw.device_id)))
        data = json.dumps({**body, **fields}).encode()
        headers = self.gw.signed("POST", "/v1/health", data)
        r = self.client.post("/v1/health", content=data, headers=headers)
        assert r.status_code == 200, r.text
        return msgspec.json.decode(r.content, type=HealthAck)

    def follow(self) -> None:
        """What the agent does with an acknowledgement naming a newer version."""
        ack = self.report(config_version="local")
        assert ack.desired_config_version is not None
        assert ack.desired_config_version > self.version
        r = self.client.get(CONFIG_PATH, headers=self.gw.signed("GET", CONFIG_PATH, b""))
        assert r.status_code == 200, r.text
        signed = msgspec.json.decode(r.content, type=SignedConfig)
        body = verify_config(
            self.pinned, signed, device_id=self.gw.device_id, newer_than=self.version
        )
        assert body == CONFIG.encode()
        self.version = signed.version
        self.report(config_version=f"v{signed.version}", config_result="applied")


def test_a_group_push_reaches_50_gateways_and_the_status_shows_each(tmp_path):
    receiver = RealReceiver(tmp_path / "receiver")
    receiver.start()
    try:
        ctl = Edgectl(
            {
                "TIERLESS_CLOUD_URL": receiver.url,
                "TIERLESS_ADMIN_TOKEN_FILE": str(receiver.admin_file),
            }
        )
        with httpx.Client(base_url=receiver.url, timeout=30) as client:
            fleet = [SimulatedGateway(f"gw-{i:02d}", receiver, client) for i in range(GATEWAYS)]
            for g in fleet:
                g.upload()
            outsider = SimulatedGateway("gw-other", receiver, client)  # no series: not in the tag
            config = tmp_path / "fleet.toml"
            config.write_text(CONFIG)
            pushed = ctl("config", "push", config, "--tag", "site=plant-1")
            assert pushed.code == 0, pushed.text
            assert f"pushed to {GATEWAYS} gateway(s)" in pushed.out
            for g in fleet:
                g.follow()
            assert outsider.report().desired_config_version is None
        status = ctl("config", "status", "--json")
        assert status.code == 0, status.text
        devices = {d["device_id"]: d for d in json.loads(status.out)["devices"]}
        sha = config_sha256(CONFIG.encode())
        for g in fleet:
            d = devices[g.gw.device_id]
            assert (d["desired_version"], d["desired_sha256"]) == (1, sha)
            assert (d["running"], d["last_result"]) == ("v1", "applied")
        assert devices["gw-other"]["desired_version"] is None
        table = ctl("config", "status")
        assert sum(1 for line in table.out.splitlines() if " applied" in line) == GATEWAYS
    finally:
        receiver.stop()
