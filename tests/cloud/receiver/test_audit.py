"""The audit log: a line per operator action, refused requests by class at most once a minute."""

from __future__ import annotations

import logging

import pytest

from cloud.receiver.audit import AUDIT_LOGGER
from tests.cloud.conftest import ADMIN_TOKEN, Receiver


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
