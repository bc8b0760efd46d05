"""The fleet page and its flags, from health reports sent over real HTTP, on both stores."""

from __future__ import annotations

import re

import msgspec

from cloud.apps.fleet import majority
from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, Receiver
from tests.cloud.receiver.test_health import post, report
from wire.http import Backlog, SourceHealth

MIN = 60_000


def flags(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-device="([^"]+)" data-flags="([^"]*)"', html))


async def test_the_fleet_page_flags_behind_silent_dropping_old_config_and_down(
    receiver: Receiver,
) -> None:
    gws = {d: await receiver.enrolled(d) for d in ("gw-ok", "gw-2", "gw-3", "gw-old", "gw-x")}
    up = [SourceHealth(name="meter", state="up")]
    fine = {"sources": up}

    async def send(device: str, n: int = 0, **kw: object) -> None:
        body = msgspec.json.encode(report(device, n, **(fine | kw)))
        assert (await post(receiver, gws[device], body)).status_code == 200

    await send("gw-ok")
    await send("gw-2", backlog=Backlog(readings=50_000, bytes=1 << 20, oldest_age_s=3600.0))
    await send("gw-3")  # drops grow between its reports
    await send("gw-3", 1, drops={"buffer_full": 7, "damaged": 0, "rejected_invalid": 3})
    await send("gw-old", config_version="ffffffffffffffff")
    await send("gw-x", sources=[SourceHealth(name="scale", state="down", reason="port_lost")])
    receiver.clock.ms += 2 * MIN
    await send("gw-ok", 1)
    await send("gw-2", 1, backlog=Backlog(readings=50_000, bytes=1 << 20, oldest_age_s=3700.0))
    receiver.clock.ms += 10 * MIN  # every report is old now except a fresh one from gw-ok
    await send("gw-ok", 2)

    r = await receiver.client.get("/fleet", headers={"authorization": f"Bearer {READ_TOKEN}"})
    assert r.status_code == 200, r.text
    found = flags(r.text)
    assert found["gw-ok"] == ""
    assert found["gw-2"] == "silent,behind"
    assert found["gw-3"] == "silent,dropping"
    assert found["gw-old"] == "silent,old config"
    assert found["gw-x"] == "silent,sources down"
    assert "port_lost" in r.text
    # the admin token never opens a dashboard page; no token gets the sign-in page
    admin = await receiver.client.get("/fleet", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 401
    assert (await receiver.client.get("/fleet")).status_code == 401


async def test_names_from_gateways_are_escaped(receiver: Receiver) -> None:
    gw = await receiver.enrolled("gw-1")
    evil = [SourceHealth(name="<script>x</script>", state="down", reason="<b>")]
    await post(receiver, gw, msgspec.json.encode(report("gw-1", sources=evil)))
    r = await receiver.client.get("/fleet", headers={"authorization": f"Bearer {READ_TOKEN}"})
    assert "<script>x" not in r.text
    assert "&lt;script&gt;x&lt;/script&gt;" in r.text


def test_the_current_config_is_the_majority_with_a_stable_tie_break() -> None:
    reports = [report("a", config_version=v) for v in ("b", "a", "b", "a", "c")]
    assert majority(reports) == "a"
    assert majority([]) is None
