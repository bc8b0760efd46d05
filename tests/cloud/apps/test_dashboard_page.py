"""The dashboard as a plant deploys it (issue 14, item 5): a gateway installed this morning, one
that went quiet, and hundreds of gateways issued a token but not yet installed. Problems come
first, the hour data began is no alarm, fresh data is a visible line with a range that fits it,
and every unit has one spelling."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.applications import Starlette

from cloud.app import create_app
from cloud.apps.charts import line_chart, unit_label
from cloud.apps.dashboard import DashboardConfig
from cloud.apps.dashboard_page import status_since_began, time_ticks
from cloud.apps.figures import Figure, Status
from cloud.bearer import BearerCheck
from cloud.config import Config
from cloud.storage.store import Store
from tests.cloud.apps.test_dashboard import DAY0, HOUR, MIN, NOW, SITE, VIEWER_TOKEN, _enrol
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, FakeClock
from tests.cloud.helpers import serve_app
from wire.models import SeriesKey

BEGAN = DAY0 + 10 * HOUR + 17 * MIN  # the new meter's first reading, 10:17 (NOW is 10:30:30)
# The issue saw 500; 60 keeps the test fast and still shows more names than the row lists.
PENDING = int(os.environ.get("TIERLESS_DASHBOARD_PENDING", "60"))


def test_units_have_one_spelling() -> None:
    assert [unit_label(u) for u in ("m3", "Nm3", "degC", "m3/h", "Nm3/h", "m2", "kWh")] == [
        "m³",
        "Nm³",
        "°C",
        "m³/h",
        "Nm³/h",
        "m²",
        "kWh",
    ]
    assert [unit_label(u) for u in ("m³", "°C", "W", "%", "kg", "")] == [
        "m³",
        "°C",
        "W",
        "%",
        "kg",
        "",
    ]
    # UCUM codes (ucum.org), what gateways declare: shown the way people write them
    ucum = ("Cel", "kW.h", "[degF]", "V.A", "kvar.h", "[ppm]", "ug/m3", "{pcs}", "[lb_av]", "m3/h")
    assert [unit_label(u) for u in ucum] == [
        "°C",
        "kWh",
        "°F",
        "VA",
        "kvarh",
        "ppm",
        "µg/m³",
        "pcs",
        "lb",
        "m³/h",
    ]


def test_a_lone_point_is_drawn_and_ticks_fit_the_span() -> None:
    svg = line_chart(
        [(NOW - MIN, 5.0, 4.0, 6.0)],
        x_labels=[],
        span=(NOW - 12 * MIN, NOW),
        unit="W",
        colour="#000",
        chart="t",
        label="t",
    )
    assert '<circle class="trend point"' in svg
    ticks = time_ticks((DAY0 + 10 * HOUR + 17 * MIN, NOW), ZoneInfo("UTC"))
    assert [text for _, text in ticks] == ["10:20", "10:25", "10:30"]
    ticks = time_ticks((NOW - 24 * HOUR, NOW), ZoneInfo("Europe/Berlin"))
    assert 4 <= len(ticks) <= 7
    assert all(text.endswith(":00") for _, text in ticks)
    week = time_ticks((NOW - 7 * 24 * HOUR, NOW), ZoneInfo("UTC"))
    assert [text for _, text in week][:2] == ["Fri 20", "Sat 21"]


@dataclass
class Site:
    client: httpx.AsyncClient
    series: dict[str, int]

    async def page(self, query: str = "") -> str:
        r = await self.client.get(f"/{query}", headers={"authorization": f"Bearer {VIEWER_TOKEN}"})
        assert r.status_code == 200, r.text
        return r.text


@contextlib.asynccontextmanager
async def new_site(store: Store, timezone: str = "UTC") -> AsyncIterator[Site]:
    clock = FakeClock(NOW - 3 * HOUR)

    def make(url: str) -> Starlette:
        config = Config(url, admin=BearerCheck(ADMIN_TOKEN), read=BearerCheck(READ_TOKEN))
        dash = DashboardConfig(viewer=BearerCheck(VIEWER_TOKEN), cache_s=0, timezone=timezone)
        return create_app(
            config, store, now_ms=clock.now_ms, monotonic=clock.monotonic, dashboard_config=dash
        )

    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    async with serve_app(make) as base_url, httpx.AsyncClient(base_url=base_url) as client:

        async def send(gw, data) -> None:
            headers, body = gw.batch_request(freeze(gw, data))
            r = await client.post("/v1/batches", content=body, headers=headers)
            assert r.status_code == 200, r.text

        # a gateway that went quiet at 07:30
        stale = await _enrol(client, base_url, "gw-quiet")
        # (not a counter: a meter that stopped is a real gap in today's figures, rightly shown)
        old = SeriesKey("room_temp", "degC", SITE, "hall-c", "drying", "")
        await send(stale, [series_data(old, [(NOW - 3 * HOUR - MIN, 100.0)])])
        # the gateways ordered for the plant, not installed yet
        for n in range(PENDING):
            r = await client.post(
                "/v1/admin/tokens", json={"device_id": f"gw-{n:03d}"}, headers=admin
            )
            assert r.status_code == 201, r.text
        # the gateway installed this morning: its meters' data began at 10:17
        clock.ms = NOW
        new = await _enrol(client, base_url, "gw-new")

        def key(metric: str, unit: str, medium: str) -> SeriesKey:
            return SeriesKey(metric, unit, SITE, "press-shop", "pressing", medium)

        minutes = range((NOW - BEGAN) // MIN + 1)
        data = {
            key("energy_import", "kWh", "electricity"): [
                (BEGAN + i * MIN, 5000.0 + 2 * i) for i in minutes
            ],
            key("cooling_water", "m3", "water"): [(BEGAN + i * MIN, 10.0 + i) for i in minutes],
            key("power_total", "W", "electricity"): [
                (BEGAN + i * MIN, 1000.0 + 50 * (i % 4)) for i in minutes
            ],
            key("oil_temp", "degC", ""): [(BEGAN + i * MIN, 40.0 + i % 3) for i in minutes],
            key("line_pressure", "bar", ""): [(NOW - 20_000, 6.5)],  # one reading, just now
        }
        await send(new, [series_data(k, v) for k, v in data.items()])
        r = await client.get("/v1/series", headers={"authorization": f"Bearer {READ_TOKEN}"})
        ids = {s["metric"]: s["id"] for s in r.json()["series"] if s["device_id"] == "gw-new"}
        yield Site(client, ids)


@pytest.fixture
async def site(store: Store) -> AsyncIterator[Site]:
    async with new_site(store) as s:
        yield s


def _gateway_rows(html: str) -> tuple[list[str], str]:
    table = html.split('<table class="health">')[1].split("</table>")[0]
    return re.findall(r'data-device="([^"]+)"', table), table


async def test_problems_first_and_pending_gateways_collapsed(site: Site) -> None:
    html = await site.page()
    devices, table = _gateway_rows(html)
    assert devices == ["gw-quiet", "gw-new"]  # the quiet one first; no row per pending one
    assert 'data-severity="bad"' in table.split('data-device="gw-new"')[0]
    assert f'data-pending="{PENDING}"' in table
    assert f"<summary>{PENDING} pending" in table
    assert "gw-000, gw-001" in table  # their names are one click away
    assert f"and {PENDING - 50} more" in table
    # the hour data began in is no alarm
    tiles = re.findall(r'<div class="kpi [^"]*" data-kpi="([^"]+)".*?</div></div>', html)
    assert "electricity|kWh" in tiles
    assert "with gaps" not in html  # data began at 10:17: 00:00-10:17 was never due
    hourly = html.split('data-chart="hourly-electricity-kWh"')[1].split("</svg>")[0]
    assert 'class="bar gap"' not in hourly  # no hatched "no data" before the meter existed
    assert re.findall(r'class="bar ([a-z]+)"', hourly) == ["complete"]  # 10:00, from 10:17


def test_only_time_before_data_began_is_not_due() -> None:
    # a gap after data began is still a gap (a meter with history: test_dashboard.py)
    f = Figure([0, 100, 200], 200, [1.0, 1.0], covered_ms=[20, 50], spans_ms=[100, 100])
    assert status_since_began([(f, 80)], 0) is Status.COMPLETE  # 80..100 covered
    assert status_since_began([(f, 80)], 1) is Status.PARTIAL  # half of a due hour
    assert status_since_began([(f, 150)], 0) is Status.FUTURE  # before data began
    assert status_since_began([(f, None)], 0) is Status.PARTIAL


async def test_fresh_data_is_a_visible_line_over_a_range_that_fits(site: Site) -> None:
    html = await site.page(f"?series={site.series['power_total']}")
    trend = html.split('data-chart="trend"')[1].split("</svg>")[0]
    line = re.search(r'<polyline class="trend" points="([^"]+)"', trend)
    assert line is not None
    xs = [float(p.split(",")[0]) for p in line.group(1).split()]
    assert max(xs) - min(xs) > 300  # of 560: the 13 minutes fill the chart
    assert "since 10:17 (data began)" in html
    labels = re.findall(r'font-size="11" fill="#5b6470">(\d\d:\d\d)</text>', trend)
    assert labels
    assert all("10:15" <= t <= "10:30" for t in labels)
    # one reading just now: a dot, not nothing
    html = await site.page(f"?series={site.series['line_pressure']}")
    assert '<circle class="trend point"' in html.split('data-chart="trend"')[1]
    # the range picker
    html = await site.page(f"?series={site.series['oil_temp']}")
    picker = html.split('<select id="trend-range" name="range">')[1].split("</select>")[0]
    assert re.findall(r'<option value="([^"]+)"', picker) == ["1h", "6h", "24h", "7d"]
    assert '<option value="24h" selected>' in picker
    html = await site.page(f"?series={site.series['oil_temp']}&range=1h")
    assert '<option value="1h" selected>' in html
    assert "1-minute mean with min–max" in html
    html = await site.page(f"?series={site.series['energy_import']}&range=7d")
    assert '<option value="7d" selected>' in html
    assert "consumption per day" in html
    html = await site.page("?range=nonsense")  # unknown: the default
    assert '<option value="24h" selected>' in html
    # one spelling of each unit on the page
    html = await site.page(f"?series={site.series['oil_temp']}")
    live = html.split('<table class="live">')[1]
    assert "<td>m³</td>" in live
    assert "<td>°C</td>" in live
    text = re.sub(r"<[^>]+>", " ", html)
    for ascii_spelling in (" m3 ", " Nm3 ", " degC ", "[degC]", "[m3]"):
        assert ascii_spelling not in text


async def test_today_is_the_plants_calendar_day(store: Store) -> None:
    """`--timezone` (TIERLESS_TIMEZONE) sets whose midnight starts "today"; `?tz=` overrides it
    for one page. At 10:30 UTC it is already 00:30 tomorrow on Kiritimati (UTC+14), so the meter
    that began at 10:17 UTC fills that day's first hour, not its eleventh."""

    def hour_bars(html: str) -> list[tuple[str, str]]:
        hourly = html.split('data-chart="hourly-electricity-kWh"')[1].split("</svg>")[0]
        bars = re.findall(r'class="bar ([a-z]+)"[^>]*>\s*<title>([^<]+)</title>', hourly)
        return [(status, title) for status, title in bars if status != "future"]

    utc_day = time.strftime("%Y-%m-%d", time.gmtime(NOW / 1000))
    next_day = time.strftime("%Y-%m-%d", time.gmtime(NOW / 1000 + 86_400))
    async with new_site(store, timezone="Pacific/Kiritimati") as s:
        html = await s.page()
        assert f"day {next_day} (Pacific/Kiritimati)" in html
        assert hour_bars(html) == [("complete", "00:00–01:00: 26.0 kWh")]
        html = await s.page("?tz=UTC")
        assert f"day {utc_day} (UTC)" in html
        assert hour_bars(html) == [("complete", "10:00–11:00: 26.0 kWh")]
