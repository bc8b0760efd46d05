"""Arbitrary requests at every endpoint of the real app never get a 5xx (issue 12: malformed input
is a 400, never a 500), on both stores.

The app is called in-process through ASGI with raw bytes: any path parameter, any query string
(not only what an HTTP client would encode), any body, with and without valid credentials, and
for `/v1/batches` with a valid signature over the arbitrary body, so it reaches the decoder.
Derandomised through the suite's hypothesis profile. `TIERLESS_FUZZ_EXAMPLES` (default 20 per
route and store) for a longer run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Route

from cloud.app import create_app
from cloud.bearer import BearerCheck
from cloud.config import Config, Limits
from cloud.storage.store import Store
from tests.cloud.conftest import ADMIN_TOKEN, READ_TOKEN, FakeClock
from tests.cloud.helpers import Gateway, register
from wire.codec import MEDIA_TYPE
from wire.errors import SignatureError
from wire.signatures import ENROLL_TAG, TAG

EXAMPLES = int(os.environ.get("TIERLESS_FUZZ_EXAMPLES", "20"))
BASE_URL = "http://testserver"

# Values that broke, or could break, a parser: out of 64 bits, control bytes, other digits.
NASTY = [
    "",
    "0",
    "-1",
    "1.5",
    "1e400",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "9" * 5000,
    "\x00",
    "a\x00b",
    "\n",
    "\x7f",
    "\u0085",
    "\ud7ff",
    "\uffff",
    "\u0661",  # ARABIC-INDIC DIGIT ONE
    "\uff11",  # FULLWIDTH DIGIT ONE
    "../../etc/passwd",
    "Europe/Berlin",
    "gw-1",
    "%",
    "%00",
    "%ff",
    "a" * 300,
]
PARAMS = [
    "device",
    "metric",
    "site",
    "area",
    "process",
    "medium",
    "from_ms",
    "to_ms",
    "limit",
    "bucket_ms",
    "agg",
    "kind",
    "tz",
    "interval",
    "group_by",
    "detail",
    "max_step_ms",
    "series",
    "token",
]
JSON_BODIES = [
    b'{"device_id": "gw-1", "ttl_s": 60, "device_id": "gw-2"}',
    b'{"device_id": "gw-1", "ttl_s": 9223372036854775808}',
    b'{"device_id": "gw-1", "ttl_s": -1}',
    b'{"device_id": "\\u0000", "ttl_s": 1.5}',
    b'{"token": "tle1.a.b.c.d", "device_id": "gw-1", "public_key": "AAAA"}',
    b'{"new_public_key": "AAAA", "pop": "\\ud800"}',
    b"[" * 3000 + b"]" * 3000,
    b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    b"\xff\xfe{}",
]


def _text() -> st.SearchStrategy[str]:
    return st.sampled_from(NASTY) | st.text(max_size=20)


def _query() -> st.SearchStrategy[bytes]:
    pair = st.tuples(st.sampled_from(PARAMS) | st.text(max_size=5), _text())
    encoded = st.lists(pair, max_size=4).map(
        lambda pairs: "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs).encode()
    )
    return encoded | st.binary(max_size=40)


def _body() -> st.SearchStrategy[bytes]:
    return st.sampled_from(JSON_BODIES) | st.binary(max_size=200)


def _credentials(path: str) -> str:
    """What a well-meaning client of `path` would send, so most examples get past the door."""
    if path.startswith("/v1/admin"):
        return "admin"
    if path in ("/v1/batches", "/v1/chain/head", "/v1/keys/rotate"):
        return "signed"
    return "enroll" if path == "/v1/enroll" else "read"


def _routes(app: Starlette) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, route.path))
    return out


async def call(app: Starlette, method: str, raw_path: bytes, query: bytes, headers, body) -> int:
    """One request through ASGI as uvicorn would pass it; the response status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client waits for the answer
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def _fill(path: str, value: str) -> bytes:
    return re.sub(r"\{[a-z_]+(:[a-z]+)?\}", lambda _: quote(value, safe=""), path).encode("ascii")


async def _open(kind: str, tmp_path: Path, dsn: str | None) -> Store:
    s: Store
    if kind == "sqlite":
        from cloud.storage.sqlite import SqliteStore

        s = SqliteStore(str(tmp_path / "cloud.db"))
    else:
        from cloud.storage.postgres import PostgresStore

        assert dsn is not None
        s = PostgresStore(dsn, pool_size=2)
    await s.open()
    await s.migrate()
    return s


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_no_request_gets_a_5xx(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue("pg_dsn") if kind == "postgres" else None
    limits = Limits(
        device_burst=1_000_000,
        enroll_burst=1_000_000,
        auth_failure_burst=1_000_000,
        handler_timeout_s=30,
        body_timeout_s=5,
    )
    config = Config(
        BASE_URL, admin=BearerCheck(ADMIN_TOKEN), read=BearerCheck(READ_TOKEN), limits=limits
    )
    clock = FakeClock()
    gw = Gateway("gw-1")
    with asyncio.Runner() as runner:
        store = runner.run(_open(kind, tmp_path, dsn))
        try:
            runner.run(register(store, gw))
            app = create_app(config, store, now_ms=clock.now_ms, monotonic=clock.monotonic)
            routes = _routes(app)
            seen: list[tuple[str, str, int]] = []

            for route in routes:  # every route gets its share of examples

                def one(route, param, query, body, credentials, gzipped) -> None:
                    method, path = route
                    raw_path = _fill(path, param)
                    headers: dict[str, str] = {"content-type": "application/json"}
                    if credentials in ("read", "admin"):
                        token = READ_TOKEN if credentials == "read" else ADMIN_TOKEN
                        headers["authorization"] = f"Bearer {token}"
                    elif credentials in ("signed", "enroll"):
                        coding = "gzip" if gzipped else None
                        if coding:
                            body = gzip.compress(body)
                        media = MEDIA_TYPE if path == "/v1/batches" else "application/json"
                        target = raw_path.decode() + (
                            f"?{query.decode('latin-1')}" if query else ""
                        )
                        tag = ENROLL_TAG if credentials == "enroll" else TAG
                        with contextlib.suppress(
                            SignatureError
                        ):  # a target we cannot sign: unsigned
                            headers = gw.signed(
                                method, target, body, content_type=media, encoding=coding, tag=tag
                            )
                    status = runner.run(call(app, method, raw_path, query, headers, body))
                    seen.append((method, path, status))
                    assert status < 500, (method, raw_path, query, headers, body[:200], status)

                given(
                    route=st.just(route),
                    param=_text(),
                    query=_query(),
                    body=_body(),
                    credentials=st.sampled_from([_credentials(route[1])] * 4 + ["none", "read"]),
                    gzipped=st.booleans(),
                )(
                    settings(
                        max_examples=EXAMPLES,
                        deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    )(one)
                )()
            # the run reached every route, and got past authentication on some
            assert {(m, p) for m, p, _ in seen} == set(routes)
            assert any(s not in (401, 403) for m, p, s in seen if p == "/v1/batches")
        finally:
            runner.run(store.close())
