"""The dashboard in a real headless browser: Debian's chromium, driven through chromedriver.

The driver is spoken to over the W3C WebDriver protocol (JSON over HTTP) with httpx, which the
project already has: no browser-automation package, and chromium and chromium-driver come from
one Debian source package, so their versions always match. Nothing is downloaded.

It loads the demo plant (tests/cloud/apps/test_dashboard.py) ingested as signed batches, checks
that a missing token is refused, that the charts are drawn and the figures are the right ones,
and that new data appears without a reload; it keeps a screenshot in `.artifacts/dashboard.png`.
Skips only when chromium or chromedriver is absent and TIERLESS_REQUIRE_SERVICES is not 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.storage.sqlite import SqliteStore
from tests.cloud.apps.test_dashboard import (
    DAY0,
    EXPECTED,
    HOUR,
    MIN,
    NOW,
    SITE,
    VIEWER_TOKEN,
    running_plant,
)
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.helpers import free_port
from tests.conftest import service_missing
from wire.models import Event, SeriesKey

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1900",
    "--hide-scrollbars",
]


def _binaries() -> tuple[str, str]:
    chromium = next(
        (
            p
            for p in ("/usr/lib/chromium/chromium", shutil.which("chromium"))
            if p and Path(p).exists()
        ),
        None,
    )
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        service_missing("chromium and chromium-driver (apt-get install chromium chromium-driver)")
    assert chromium is not None
    assert driver is not None
    return chromium, driver


class Browser:
    """One WebDriver session: just the commands this test needs."""

    def __init__(self, client: httpx.AsyncClient, session: str) -> None:
        self._client = client
        self._session = session

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = await self._client.request(method, f"/session/{self._session}{path}", json=body)
        payload = r.json()
        if r.status_code != 200:
            raise AssertionError(f"webdriver {path}: {payload['value']}")
        return payload["value"]

    async def go(self, url: str) -> None:
        await self._call("POST", "/url", {"url": url})

    async def url(self) -> str:
        return str(await self._call("GET", "/url"))

    async def js(self, script: str, *args: Any) -> Any:
        return await self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    async def wait_for(self, script: str, *, timeout_s: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.js(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {script}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        png = base64.b64decode(await self._call("GET", "/screenshot"))

        def save() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)

        await asyncio.to_thread(save)


@contextlib.asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[Browser]:
    chromium, driver = _binaries()
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        driver, f"--port={port}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/status")).json()["value"]["ready"]:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError("chromedriver did not start")
                await asyncio.sleep(0.05)
            options = {"binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}
            caps = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
            r = await client.post("/session", json={"capabilities": caps})
            assert r.status_code == 200, r.text
            session = r.json()["value"]["sessionId"]
            try:
                yield Browser(client, session)
            finally:
                await client.delete(f"/session/{session}")
    finally:
        proc.terminate()
        async with asyncio.timeout(15):
            await proc.wait()


KPIS = """
const out = {};
for (const el of document.querySelectorAll('[data-kpi]')) {
  out[el.dataset.kpi] = Number(el.dataset.value);
}
return out;
"""


async def test_dashboard_in_a_real_browser(tmp_path: Path) -> None:
    _binaries()
    store = SqliteStore(str(tmp_path / "cloud.db"))
    await store.open()
    await store.migrate()
    try:
        async with running_plant(store, refresh_s=1.0) as plant, browser(tmp_path / "profile") as b:
            base = plant.base_url
            # refused without a token: the sign-in form, none of the plant's data
            await b.go(base + "/")
            text = await b.js("return document.body.innerText")
            assert "needs a viewer token" in text
            assert "Today by hour" not in text
            await b.go(base + "/?token=wrong-token-0000")
            assert "not accepted" in await b.js("return document.body.innerText")

            # the token once; the address bar loses it, the cookie keeps the session
            await b.go(f"{base}/?token={VIEWER_TOKEN}")
            assert await b.url() == base + "/"
            assert await b.js("return document.cookie") == ""  # HttpOnly: not for scripts
            await b.wait_for("return document.querySelectorAll('svg.chart').length >= 8")
            assert await b.js(KPIS) == pytest.approx(EXPECTED)
            tiles = await b.js(
                "return [...document.querySelectorAll('.kpi-value')].map(e => e.innerText)"
            )
            assert tiles[:3] == ["5,035 kWh", "315.0 m³", "1,260 Nm³"]
            bars = await b.js(
                "return document.querySelectorAll('svg[data-chart^=\"hourly-\"] rect.bar').length"
            )
            assert bars >= 3 * 11  # three media, 00:00 .. 10:00
            # the layout really renders: charts have a size, the tables are there
            size = await b.js(
                "const r = document.querySelector('svg[data-chart=\"materials\"]')"
                ".getBoundingClientRect(); return [r.width, r.height]"
            )
            assert size[0] > 300
            assert size[1] > 50
            assert "gw-line-2" in await b.js(
                "return document.querySelector('table.health').innerText"
            )

            # new data appears without a reload
            await b.js("window.__sameDocument = true")
            updated = await b.js("return document.getElementById('updated').dataset.ms")
            gw = plant.gateways["gw-demo-01"]
            key = SeriesKey(
                "energy_import", "kWh", SITE, "substation", "plant-supply", "electricity"
            )
            i = (NOW - (DAY0 - 2 * HOUR)) // MIN
            new = [(DAY0 + 10 * HOUR + 31 * MIN, 12_345.0 + 3 * i + 3)]
            ticket = Event(
                "weighbridge_ticket",
                NOW,
                (("ticket", 2000), ("material", "SAND"), ("net_kg", 6000)),
            )
            await plant.send(gw, freeze(gw, [series_data(key, new)], [ticket]))
            plant.clock.advance(60_000)
            await b.wait_for(
                "return Number(document.querySelector('[data-kpi=\"electricity|kWh\"]')"
                f".dataset.value) > {EXPECTED['electricity|kWh'] + 2}"
            )
            assert await b.js("return window.__sameDocument === true")
            assert await b.js("return document.getElementById('updated').dataset.ms") != updated
            kpis = await b.js(KPIS)
            assert kpis["material|t"] == pytest.approx(EXPECTED["material|t"] + 6)
            assert (
                await b.js("return document.getElementById('refresh-status').innerText") == "live"
            )
            # one spelling of each unit in what people read
            text = await b.js("return document.body.innerText")
            for ascii_spelling in ("\tm3\t", "\tNm3\t", "\tdegC\t"):
                assert ascii_spelling not in text
            assert "\t°C\t" in text
            # the range picker: the choice goes into the address and the chart follows
            await b.js(
                "const s = document.getElementById('trend-range'); s.value = '1h';"
                " s.dispatchEvent(new Event('change'))"
            )
            await b.wait_for("return location.search.includes('range=1h')")
            await b.wait_for(
                "return document.querySelector('#trend-range option[value=\"1h\"]').selected"
                " && document.body.innerText.includes('1-minute mean')"
            )
            assert await b.js("return window.__sameDocument === true")
            await b.js(
                "const s = document.getElementById('trend-range'); s.value = '24h';"
                " s.dispatchEvent(new Event('change'))"
            )
            await b.wait_for("return document.body.innerText.includes('5-minute mean')")
            await b.screenshot(ARTIFACTS / "dashboard.png")
    finally:
        await store.close()
