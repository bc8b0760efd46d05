"""The audit log: a line per operator action, refused requests by class at most once a minute."""

from __future__ import annotations

import logging

import pytest

from cloud.config import Limits
from cloud.receiver.audit import AUDIT_LOGGER
from cloud.storage.store import Store
from tests.cloud.conftest import ADMIN_TOKEN, Receiver, running_receiver


def _audit(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]


async def test_every_admin_action_is_one_audit_line(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    token = await receiver.token("gw-audit")
    gw = await receiver.enrolled("gw-audit")
    for action in ("disable", "enable", "revoke"):
        r = await receiver.admin("POST", f"/v1/admin/devices/gw-audit/{action}")
        assert r.status_code == 200, r.text
    second = await receiver.enrolled("gw-audit")  # re-enrolment: a new token, a new key
    r = await receiver.admin("POST", f"/v1/admin/keys/{second.keyid}/revoke")
    assert r.status_code == 200, r.text
    lines = _audit(caplog)
    assert token not in "".join(lines)  # never the token itself
    creates = [line for line in lines if line.startswith("audit: token create device='gw-audit'")]
    assert len(creates) == 3  # receiver.token, and one inside each enrolled()
    assert all(line.endswith("from 127.0.0.1") for line in lines)
    assert [line.split(" from ")[0] for line in lines if "token create" not in line] == [
        "audit: device disable device='gw-audit'",
        "audit: device enable device='gw-audit'",
        "audit: device revoke device='gw-audit' keys_revoked=1",
        f"audit: key revoke keyid='{second.keyid}' device='gw-audit'",
    ]
    assert gw.keyid != second.keyid


async def test_refused_requests_are_rate_limited_lines_per_class(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    wrong = {"authorization": "Bearer not-the-admin-token"}
    for _ in range(5):
        r = await receiver.client.get("/v1/admin/devices", headers=wrong)
        assert r.status_code == 401
    r = await receiver.client.get(
        "/v1/admin/devices/nobody", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert r.status_code == 404
    assert _audit(caplog) == [
        "audit: refused 401 unauthorized on admin_devices from 127.0.0.1",
        "audit: refused 404 not_found on admin_device from 127.0.0.1",
    ]
    receiver.clock.advance(61_000)
    r = await receiver.client.get("/v1/admin/devices", headers=wrong)
    assert _audit(caplog)[-1] == (
        "audit: refused 401 unauthorized on admin_devices from 127.0.0.1"
        " (4 more since the last line)"
    )


async def test_a_gateways_refusals_are_audit_lines_too(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The device routes refuse through the same path as the admin ones: a revoked key (403)
    and a rate limit (429) each give their class's line, and a flood of 429s one line."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    async with running_receiver(store, Limits(device_rate_per_s=1.0, device_burst=1)) as rc:
        gw = await rc.enrolled("gw-audit")
        assert (await rc.send(gw, gw.next_batch())).status_code == 200
        for _ in range(3):
            assert (await rc.send(gw, gw.next_batch())).status_code == 429
        rc.clock.advance(1000)
        r = await rc.admin("POST", f"/v1/admin/keys/{gw.keyid}/revoke")
        assert r.status_code == 200, r.text
        refused = await rc.send(gw, gw.next_batch())
        assert refused.status_code == 403, refused.text
    code = refused.json()["error"]
    assert [line for line in _audit(caplog) if "refused" in line] == [
        "audit: refused 429 rate_limited on batches from 127.0.0.1",
        f"audit: refused 403 {code} on batches from 127.0.0.1",
    ]
