"""The chaos soak, short: `python -m soak` on SQLite and on PostgreSQL, as `make soak` runs it.

Every fault kind is injected at least once per store (kill -9 of agent and receiver, a receiver
outage, a broker restart) while the proxy damages HTTP and every serial line is noisy; the ledger
must hold (nothing duplicated or made up, nothing lost beyond the kill -9 window, no reading
dropped by the gateway) and the agent must never have exited by itself. TIERLESS_SOAK_SECONDS
sets the length per store.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.mqtt import find_mosquitto
from soak.schedule import Kind
from tests.conftest import PG_DSN, service_missing

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SECONDS = os.environ.get("TIERLESS_SOAK_SECONDS", "40")


# One test per store, so the two halves run side by side on make test's two workers.
@pytest.mark.timeout(600)
@pytest.mark.mqtt
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_soak_keeps_the_ledger(tmp_path, request, store):
    if store == "postgres":
        request.getfixturevalue("pg_dsn")  # skips, or fails under the require flag, without one
    if find_mosquitto() is None:
        service_missing("the mosquitto binary")
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "soak", "--seconds", SECONDS, "--store", store]
        + ["--dir", str(tmp_path / "runs"), "--json", str(out), "--pg-dsn", PG_DSN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    report = json.loads(out.read_text()) if out.exists() else []
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert [r["store"] for r in report] == [store]
    for run in report:
        ledger, faults = run["ledger"], run["faults"]
        assert ledger["ok"]
        assert ledger["drained"]
        assert ledger["duplicated"] == 0
        assert ledger["unexpected"] == 0
        assert ledger["chain"]["gaps"] == 0
        assert ledger["chain"]["forks"] == 0
        assert ledger["chain"]["dropped"] == 0
        for device in ("mcu", "mqtt"):  # these redeliver: nothing may be lost, whatever happens
            assert ledger["devices"][device]["missing"] == 0
        assert set(faults["done"]) == {k.value for k in Kind}
        assert faults["proxy"]["cuts"] > 0
        for device in ("mcu", "meter", "weighbridge"):  # every serial line is noisy
            noise = faults["serial_noise"][device]
            assert noise["flips"] + noise["controls"] + noise["truncated_bytes"] > 0, device
