"""The efficiency page in a real headless browser (chromium through chromedriver, as the
overview's test does: tests/e2e/test_dashboard_browser.py): the synthetic plant with its planted
faults, sent through the receiver, alerts raised through the API, a production counter and an
operator's corrected entry; the page must refuse a visitor without a session, then show the live
alerts, the findings, energy per tonne and production by source with the entries, laid out.
Keeps a screenshot in `.artifacts/efficiency.png`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.storage.sqlite import SqliteStore
from tests.cloud.apps import plant as synth
from tests.cloud.apps.test_efficiency import feed
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, running_receiver
from tests.e2e.test_dashboard_browser import ARTIFACTS, _binaries, browser
from wire.models import SeriesKey

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
            # A third line measured by a belt scale's totaliser (1 t every 15 minutes over the
            # last day), and a press whose production an operator enters, then corrects.
            belt = await receiver.enrolled("gw-belt")
            key = SeriesKey("belt_total", "t", "plant", "hall", "line3", "product")
            start = plant.to_ms - 24 * synth.HOUR
            rows = [(start + i * synth.STEP, 100.0 + i) for i in range(96)]
            r = await receiver.send(belt, freeze(belt, [series_data(key, rows)]))
            assert r.status_code == 200, r.text
            entry = {
                "process": "press",
                "from_ms": plant.to_ms - 8 * synth.HOUR,
                "to_ms": plant.to_ms - 4 * synth.HOUR,
                "tonnes": 50.0,
                "actor": "ana",
                "note": "scale down",
            }
            r = await receiver.client.post("/v1/production", json=entry, headers=admin)
            assert r.status_code == 201, r.text
            fix = {**entry, "tonnes": 55.0, "supersedes": r.json()["entry_id"]}
            r = await receiver.client.post("/v1/production", json=fix, headers=admin)
            assert r.status_code == 201, r.text

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
            by_source = await b.js(
                "return Object.fromEntries([...document.querySelectorAll('tr.production')].map("
                "r => [r.dataset.process, Object.fromEntries([...r.querySelectorAll("
                "'td[data-source]')].map(c => [c.dataset.source, Number(c.dataset.value)]))]))"
            )
            assert by_source["line3"]["counters"] == pytest.approx(95.0)
            assert by_source["press"]["entries"] == pytest.approx(55.0)
            assert by_source["line1"]["tickets"] > 100
            assert by_source["line1"]["counters"] == 0  # none: shown as –
            states = await b.js(
                "return [...document.querySelectorAll('tr.entry')].map(e => e.dataset.state)"
            )
            assert states == ["in-effect", "superseded"]  # newest first
            entered = await b.js("return document.querySelector('tr.entry').innerText")
            assert "55.0 t" in entered
            assert "ana" in entered
            assert "corrects" in entered
            width = await b.js(
                "return document.getElementById('findings').getBoundingClientRect().width"
            )
            assert width > 300
            await b.screenshot(ARTIFACTS / "efficiency.png")
    finally:
        await store.close()
