"""The receiver behind its own TLS (uvicorn with --tls-cert/--tls-key): TLS 1.2+ only."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import httpx
import pytest
import trustme

from cloud.app import create_app
from cloud.bearer import BearerCheck
from cloud.config import Config
from cloud.server import tls_context_factory
from cloud.storage.sqlite import SqliteStore
from tests.cloud.helpers import Gateway, serve_app


async def test_tls_receiver_accepts_signed_batches_and_refuses_old_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    store = SqliteStore(str(tmp_path / "c.db"))
    await store.open()
    await store.migrate()
    try:
        async with serve_app(
            lambda url: create_app(Config(url, admin=BearerCheck("a" * 20)), store),
            scheme="https",
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            ssl_context_factory=tls_context_factory,
        ) as base_url:
            client_ctx = ssl.create_default_context()
            ca.configure_trust(client_ctx)
            async with httpx.AsyncClient(base_url=base_url, verify=client_ctx) as c:
                r = await c.post(
                    "/v1/admin/tokens",
                    json={"device_id": "gw-1", "ttl_s": 60},
                    headers={"authorization": "Bearer " + "a" * 20},
                )
                gw = Gateway("gw-1", base_url=base_url)
                headers, body = gw.enroll_request(r.json()["token"])
                assert (
                    await c.post("/v1/enroll", content=body, headers=headers)
                ).status_code == 201
                headers, body = gw.batch_request(gw.next_batch())
                ack = await c.post("/v1/batches", content=body, headers=headers)
                assert ack.json()["status"] == "stored"

            old = ssl.create_default_context()
            ca.configure_trust(old)
            with warnings.catch_warnings():  # a TLS 1.1 client is the point of this check
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
            old.set_ciphers("ALL:@SECLEVEL=0")
            async with httpx.AsyncClient(base_url=base_url, verify=old) as c:
                with pytest.raises(httpx.ConnectError):
                    await c.get("/healthz")
            untrusted = ssl.create_default_context()  # does not know our CA
            async with httpx.AsyncClient(base_url=base_url, verify=untrusted) as c:
                with pytest.raises(httpx.ConnectError):
                    await c.get("/healthz")
    finally:
        await store.close()
