"""The dashboard over HTTP: sign-in and cookie rules, the numbers it shows for a demo-like plant,
refresh, and the page's security headers. `tests/e2e/test_dashboard_browser.py` drives the same
plant in a real browser.

The plant is the demo's (demo/plant.py): an energy meter (import, export and total registers plus
power), the MCU's compressed air (Nm3, gas) and cooling water (m3, water), a weighbridge's tickets
and net mass, MQTT temperature and humidity; plus a second gateway whose melting-line meter is
replaced at 02:00 and silent 06:00-08:00. Every counter rises at a constant rate, so the day's
figures are round numbers: see `EXPECTED`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from cloud.app import create_app
from cloud.apps.dashboard import COOKIE, DashboardConfig
from cloud.bearer import BearerCheck
from cloud.config import Config
from cloud.storage.store import Store
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, FakeClock
from tests.cloud.helpers import Frozen, Gateway, serve_app
from wire.models import Counters, Event, SeriesKey

MIN = 60_000
HOUR = 3_600_000
DAY0 = 1_795_651_200_000  # 2026-11-26 00:00 UTC
NOW = DAY0 + 10 * HOUR + 30 * MIN + 30_000  # 10:30:30
VIEWER_TOKEN = "viewer-token-for-tests"
SITE = "demo-plant"
TICKETS = [("GRAVEL", "L-0412", 25_340), ("SAND", "L-0413", 18_120), ("CEMENT", "L-0414", 31_800)]
# today 00:00 -> 10:30 is 630 minutes
EXPECTED = {
    "electricity|kWh": 630 * 3 + (630 - 1) * 5,  # main meter + melting line (reset: 1 min unknown)
    "water|m³": 630 * 0.5,
    "gas|Nm³": 630 * 2,
    "material|t": sum(net for _, _, net in TICKETS) / 1000,
}


def plant_batches(
    gw_demo: Gateway, gw_line: Gateway, *, until_ms: int = NOW
) -> list[tuple[Gateway, Frozen]]:
    """Readings every minute from 22:00 yesterday to `until_ms`, and three tickets this morning."""
    start = DAY0 - 2 * HOUR
    minutes = range((until_ms - start) // MIN + 1)

    def key(metric: str, unit: str, area: str, process: str, medium: str = "") -> SeriesKey:
        return SeriesKey(metric, unit, SITE, area, process, medium)

    meter = ("substation", "plant-supply", "electricity")
    rows: dict[SeriesKey, list[tuple[int, float]]] = {
        key("energy_import", "kWh", *meter): [],
        key("energy_export", "kWh", *meter): [],
        key("energy_total", "kWh", *meter): [],
        key("power_total", "W", *meter): [],
        key("compressed_air", "Nm3", "press-shop", "pressing", "gas"): [],
        key("cooling_water", "m3", "press-shop", "pressing", "water"): [],
        key("net_mass", "kg", "gate", "goods-in", "material"): [],
        key("th-01.temperature", "degC", "hall-b", "environment"): [],
        key("th-01.humidity", "%", "hall-b", "environment"): [],
    }
    melt: list[tuple[int, float]] = []
    keys = list(rows)
    for i in minutes:
        t = start + i * MIN
        rows[keys[0]].append((t, 12_345.0 + 3 * i))
        rows[keys[1]].append((t, 12.5))
        rows[keys[2]].append((t, 12_357.5 + 3 * i))
        rows[keys[3]].append((t, 180_000.0 + 1000 * (i % 60)))
        rows[keys[4]].append((t, 5_000.0 + 2 * i))
        rows[keys[5]].append((t, 99_900.0 + 0.5 * i))
        rows[keys[7]].append((t, 20.0 + (i % 30) / 10))
        rows[keys[8]].append((t, 45.0))
        hour = (t - DAY0) / HOUR
        if not 6 < hour < 8:  # silent 06:00-08:00
            melt.append((t, 48_000.0 + 5 * i if hour < 2 else 3.0 + 5 * (i - 240)))
    events = []
    for n, (material, lot, net) in enumerate(TICKETS):
        t = DAY0 + (7 + n) * HOUR + 12 * MIN
        rows[keys[6]].append((t, float(net)))
        attrs = (("ticket", 1042 + n), ("material", material), ("lot", lot), ("net_kg", net))
        events.append(Event("weighbridge_ticket", t, attrs))
    rows[keys[6]].sort()
    melt_key = SeriesKey("energy_import", "kWh", SITE, "hall-a", "melting", "electricity")
    first = freeze(gw_demo, [series_data(k, v) for k, v in rows.items()], events)
    second = freeze(
        gw_line, [series_data(melt_key, melt)], counters=Counters(dropped_buffer_full=120)
    )
    return [(gw_demo, first), (gw_line, second)]


@dataclass
class Plant:
    base_url: str
    client: httpx.AsyncClient
    clock: FakeClock
    gateways: dict[str, Gateway]

    async def send(self, gw: Gateway, frozen: Frozen) -> None:
        headers, body = gw.batch_request(frozen)
        r = await self.client.post("/v1/batches", content=body, headers=headers)
        assert r.status_code == 200, r.text


async def _enrol(client: httpx.AsyncClient, base_url: str, device_id: str) -> Gateway:
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    r = await client.post("/v1/admin/tokens", json={"device_id": device_id}, headers=admin)
    gw = Gateway(device_id, base_url=base_url)
    headers, body = gw.enroll_request(r.json()["token"])
    assert (await client.post("/v1/enroll", content=body, headers=headers)).status_code == 201
    return gw


@contextlib.asynccontextmanager
async def running_plant(store: Store, *, refresh_s: float = 5.0) -> AsyncIterator[Plant]:
    """A receiver with the dashboard (no view cache) and the demo plant's data ingested."""
    clock = FakeClock(NOW)

    def make(url: str) -> Starlette:
        config = Config(url, admin=BearerCheck(ADMIN_TOKEN), read=BearerCheck(READ_TOKEN))
        dash = DashboardConfig(viewer=BearerCheck(VIEWER_TOKEN), refresh_s=refresh_s, cache_s=0)
        return create_app(
            config, store, now_ms=clock.now_ms, monotonic=clock.monotonic, dashboard_config=dash
        )

    async with serve_app(make) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        gws = {d: await _enrol(client, base_url, d) for d in ("gw-demo-01", "gw-line-2")}
        plant = Plant(base_url, client, clock, gws)
        for gw, frozen in plant_batches(gws["gw-demo-01"], gws["gw-line-2"]):
            await plant.send(gw, frozen)
        yield plant


@pytest.fixture
async def plant(store: Store) -> AsyncIterator[Plant]:
    async with running_plant(store) as p:
        yield p


def kpis(html: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r'data-kpi="([^"]+)" data-value="([^"]*)"', html)}


async def test_without_a_token_every_page_is_the_sign_in_page(plant: Plant) -> None:
    for path in ("/", "/?series=1", "/?token=wrong-token-0000"):
        r = await plant.client.get(path)
        assert r.status_code == 401, path
        assert '<form class="card signin-card" method="post" action="/login">' in r.text
        assert "energy_import" not in r.text
    r = await plant.client.get("/dashboard/fragment")
    assert r.status_code == 401
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (await plant.client.get("/", headers=admin)).status_code == 401  # never in a browser
    r = await plant.client.get("/", headers={"cookie": f"{COOKIE}=%%%"})
    assert r.status_code == 401


async def test_token_link_sets_a_strict_cookie_and_drops_the_token(plant: Plant) -> None:
    r = await plant.client.get(f"/?token={VIEWER_TOKEN}&series=4")
    assert r.status_code == 303
    assert r.headers["location"] == "/?series=4"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert VIEWER_TOKEN not in cookie  # encoded, and only ever in this header
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain-HTTP test receiver; https public URLs add it
    r = await plant.client.get("/?series=4")  # httpx keeps the cookie
    assert r.status_code == 200
    assert 'value="4" selected' in r.text


async def test_sign_in_form_and_sign_out(plant: Plant) -> None:
    r = await plant.client.post("/login", data={"token": "nope-nope-nope-nope"})
    assert r.status_code == 401
    assert "not accepted" in r.text
    r = await plant.client.post(
        "/login", data={"token": READ_TOKEN}, headers={"origin": "http://elsewhere.example"}
    )
    assert r.status_code == 401  # a form posted from another site
    r = await plant.client.post("/login", data={"token": READ_TOKEN})
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert (await plant.client.get("/")).status_code == 200
    r = await plant.client.post("/logout")
    assert "Max-Age=0" in r.headers["set-cookie"]
    plant.client.cookies.clear()
    assert (await plant.client.get("/")).status_code == 401


async def test_plant_overview_shows_the_days_figures(plant: Plant) -> None:
    r = await plant.client.get("/", headers={"authorization": f"Bearer {VIEWER_TOKEN}"})
    assert r.status_code == 200
    html = r.text
    assert kpis(html) == pytest.approx(EXPECTED)
    assert ">5,035 <span" in html  # the electricity tile as people read it
    assert ">75.3 <span" in html  # tonnes received
    charts = set(re.findall(r'data-chart="([^"]+)"', html))
    assert {"hourly-electricity-kWh", "hourly-water-m³", "hourly-gas-Nm³", "materials"} <= charts
    assert {"process-kWh", "process-m³", "process-Nm³", "trend"} <= charts
    hourly = html.split('data-chart="hourly-electricity-kWh"')[1].split("</svg>")[0]
    values = [float(v) for v in re.findall(r'class="bar [a-z]+" [^>]*data-value="([^"]+)"', hourly)]
    assert values[0] == pytest.approx(3 * 60 + 5 * 60)
    assert values[1] == pytest.approx(3 * 60 + 5 * 59)  # the replaced meter's unknown minute
    assert len(re.findall(r'class="bar partial"', hourly)) == 3  # 01:00, 06:00-08:00 line silent
    # the gateways' health
    assert 'data-device="gw-line-2"' in html
    line = html.split('data-device="gw-line-2"')[1].split("</tr>")[0]
    assert ">120</td>" in line  # dropped readings reported by the gateway
    assert "synced +5 ms" in line
    # live values: every series; the weighbridge's last net mass (09:12) is shown as stale
    assert html.count(" data-series=") == 10
    assert html.count('<tr class="stale" data-series=') == 1
    assert "L-0414" in html
    assert 'data-ms="' + str(NOW) + '"' in html


async def test_refresh_shows_new_data(plant: Plant) -> None:
    headers = {"authorization": f"Bearer {READ_TOKEN}"}
    before = kpis((await plant.client.get("/dashboard/fragment", headers=headers)).text)
    gw = plant.gateways["gw-demo-01"]
    key = SeriesKey("energy_import", "kWh", SITE, "substation", "plant-supply", "electricity")
    i = (NOW - (DAY0 - 2 * HOUR)) // MIN
    await plant.send(
        gw, freeze(gw, [series_data(key, [(DAY0 + 10 * HOUR + 31 * MIN, 12_345.0 + 3 * i + 3)])])
    )
    tickets = [
        Event("weighbridge_ticket", NOW, (("ticket", 2000), ("material", "SAND"), ("net_kg", 1000)))
    ]
    await plant.send(gw, freeze(gw, [], tickets))
    plant.clock.advance(60_000)
    after = kpis((await plant.client.get("/dashboard/fragment", headers=headers)).text)
    assert after["electricity|kWh"] == pytest.approx(before["electricity|kWh"] + 3)
    assert after["material|t"] == pytest.approx(before["material|t"] + 1)


async def test_page_headers_and_assets(plant: Plant) -> None:
    r = await plant.client.get("/", headers={"authorization": f"Bearer {READ_TOKEN}"})
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert "<script>" not in r.text
    assert " style=" not in r.text
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        r = await plant.client.get(f"/static/{name}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(kind)
        assert b"http://" not in r.content
        assert b"https://" not in r.content  # nothing from elsewhere: works offline
    assert (await plant.client.get("/static/../app.py")).status_code == 404


async def test_names_from_gateways_are_escaped(plant: Plant) -> None:
    gw = plant.gateways["gw-line-2"]
    key = SeriesKey("<script>x</script>", "kWh", SITE, "a&b", '"q"', "electricity")
    await plant.send(gw, freeze(gw, [series_data(key, [(NOW - MIN, 1.0), (NOW, 2.0)])]))
    r = await plant.client.get("/", headers={"authorization": f"Bearer {READ_TOKEN}"})
    assert "<script>x" not in r.text
    assert "&lt;script&gt;x&lt;/script&gt;" in r.text


async def test_an_empty_receiver_shows_an_empty_dashboard(store: Store) -> None:
    from tests.cloud.conftest import running_receiver

    async with running_receiver(store) as receiver:
        r = await receiver.client.get("/", headers={"authorization": f"Bearer {READ_TOKEN}"})
        assert r.status_code == 200
        assert "No meter counters" in r.text
        assert "No gateways yet." in r.text
        assert kpis(r.text) == {"material|t": 0.0}
        r = await receiver.client.get(
            "/v1/figures/consumption", headers={"authorization": f"Bearer {READ_TOKEN}"}
        )
        assert r.json()["groups"] == []
