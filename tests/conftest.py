"""Shared fixtures: real services, addressed by environment variables with local defaults.

A service test skips when its service is absent, unless TIERLESS_REQUIRE_SERVICES=1 (set by
.ci/run), in which case an absent service is a failure: CI never goes green by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, settings

# Property tests are derandomised: the same examples on every run and every machine, so a red
# test is reproducible and CI never turns red by luck. HYPOTHESIS_PROFILE=explore searches anew.
# Deterministic in make test, and no timing checks: a loaded 2-core machine is not slow code.
settings.register_profile(
    "tierless",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tierless"))

PG_DSN = os.environ.get("TIERLESS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/tierless_test")
MQTT_URL = os.environ.get("TIERLESS_MQTT_URL", "mqtt://127.0.0.1:1883")
REQUIRE_SERVICES = os.environ.get("TIERLESS_REQUIRE_SERVICES", "") == "1"


def service_missing(what: str) -> None:
    """Skip, or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is not available and TIERLESS_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(f"{what} is not available")


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        service_missing("psycopg")
        raise
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL at {PG_DSN} ({exc})")
        raise
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_DSN else "?"
        try:
            yield f"{PG_DSN}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def mqtt_url() -> str:
    parts = urlsplit(MQTT_URL)
    if not _tcp_open(parts.hostname or "127.0.0.1", parts.port or 1883):
        service_missing(f"MQTT broker at {MQTT_URL}")
    return MQTT_URL


@pytest.fixture
def unique_topic() -> str:
    return f"tierless-test/{uuid.uuid4().hex}"
