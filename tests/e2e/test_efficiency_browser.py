"""The efficiency page in a real headless browser (chromium through chromedriver, as the
overview's test does: tests/e2e/test_dashboard_browser.py): the synthetic plant with its planted
faults, sent through the receiver, alerts raised through the API; the page must refuse a visitor
without a session, then show the live alerts, the findings and energy per tonne, laid out.
Keeps a screenshot in `.artifacts/efficiency.png`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.storage.sqlite import SqliteStore
from tests.cloud.apps import plant as synth
from tests.cloud.apps.test_efficiency import feed
from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, running_receiver
from tests.e2e.test_dashboard_browser import ARTIFACTS, _binaries, browser

pytestmark = pytest.mark.e2e


async def test_efficiency_page_in_a_real_browser(tmp_path: Path) -> None:
    _binaries()
    store = SqliteStore(str(tmp_path / "cloud.db"))
    await store.open()
    await store.migrate()
    try:
        async with running_receiver(store) as receiver, browser(tmp_path / "profile") as b:
            plant = synth.generate(30)
            await feed(receiver, plant)
            admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
            r = await receiver.client.put("/v1/alert-rules/all", json={"id": "all"}, headers=admin)
            assert r.status_code == 200, r.text
            r = await receiver.client.post("/v1/alerts/evaluate", headers=admin)
            assert len(r.json()["opened"]) == 6

            base = receiver.base_url
            await b.go(base + "/efficiency")
            text = await b.js("return document.body.innerText")
            assert "needs a viewer token" in text
            assert "Findings" not in text
            await b.go(f"{base}/?token={READ_TOKEN}")  # signs in: the session cookie
            await b.go(base + "/efficiency")
            await b.wait_for("return document.querySelectorAll('tr.finding').length > 0")
            kinds = await b.js(
                "return [...document.querySelectorAll('tr.finding')].map(e => e.dataset.kind)"
            )
            assert sorted(kinds) == ["baseload", "night_flow", "silent", "step", "step", "stuck"]
            assert await b.js("return document.querySelectorAll('tr.alert').length") == 6
            stuck = await b.js(
                "return document.querySelector('tr.finding[data-kind=\"stuck\"]').innerText"
            )
            assert "gw-a/gas_volume" in stuck
            assert "0.00 m³" in stuck  # seen: nothing
            per_tonne = await b.js(
                "return [...document.querySelectorAll("
                '\'tr.intensity[data-process="line2"][data-medium="electricity"] td[data-value]\''
                ")].map(e => Number(e.dataset.value))"
            )
            assert per_tonne
            assert all(200 < v < 250 for v in per_tonne)  # after the step: about 225 kWh/t
            shifts = await b.js(
                "return [...document.querySelectorAll('tr.intensity td[data-shift=\"late\"]')]"
                ".map(e => e.innerText)"
            )
            assert any(text not in ("", "–") for text in shifts)  # weekdays' late shifts
            width = await b.js(
                "return document.getElementById('findings').getBoundingClientRect().width"
            )
            assert width > 300
            await b.screenshot(ARTIFACTS / "efficiency.png")
    finally:
        await store.close()
