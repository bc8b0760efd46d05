"""Opening and closing one OPC UA session for the source: security policy and mode, the server
certificate checked against the trust list before the secure channel is opened (the source's
invariant 6), the user name and password. With `source` and `requests`, the only modules that
import asyncua; what asyncua raises on the way becomes `RefusedError` here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.uaerrors import UaError

from agent.sources.opcua.certs import ClientIdentity, fingerprint
from agent.sources.opcua.config import OpcuaSourceConfig

# What asyncua raises when a server is away, refuses us or breaks the protocol.
FAULTS = (OSError, TimeoutError, UaError, EOFError, asyncio.IncompleteReadError)
POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}


class RefusedError(Exception):
    """A connect attempt failed: the server is away, refused us, or is not one we trust."""


@dataclass(frozen=True, slots=True)
class Credentials:
    application_uri: str
    identity: ClientIdentity | None  # None: security policy None
    trusted: frozenset[bytes]  # DER certificates of servers we accept
    password: str | None


async def open_session(
    cfg: OpcuaSourceConfig, creds: Credentials, *, on_rejected: Callable[[], None]
) -> tuple[Client, asyncio.Event]:
    """A connected client and the event its loss sets; RefusedError otherwise (`on_rejected`
    called first when it was the server's certificate). No asyncua task outlives a failure."""
    client = Client(cfg.url, timeout=cfg.timeout_s, watchdog_intervall=cfg.watchdog_s)
    client.application_uri = creds.application_uri
    client.name = client.description = f"tierless {cfg.name}"
    client.session_timeout = cfg.session_timeout_ms  # revised by the server at CreateSession
    lost = asyncio.Event()

    async def on_lost(exc: Exception) -> None:
        lost.set()

    client.connection_lost_callback = on_lost
    try:
        async with asyncio.timeout(cfg.timeout_s * 3):
            if creds.identity is not None:
                server_der = await _server_certificate(cfg, client, creds.trusted, on_rejected)
                await client.set_security(
                    POLICIES[cfg.security_policy],
                    certificate=creds.identity.certificate_der,
                    private_key=creds.identity.key_der(),
                    server_certificate=server_der,
                    mode=getattr(ua.MessageSecurityMode, cfg.security_mode),
                )
            if cfg.username:
                client.set_user(cfg.username)
                client.set_password(creds.password or "")
            await client.connect(auto_reconnect=False)
    except FAULTS as exc:
        await close_session(client, cfg.timeout_s)
        raise RefusedError(describe(exc)) from exc
    except BaseException:  # refused, cancelled: no asyncua task outlives the attempt
        await close_session(client, cfg.timeout_s)
        raise
    return client, lost


async def _server_certificate(
    cfg: OpcuaSourceConfig,
    client: Client,
    trusted: frozenset[bytes],
    on_rejected: Callable[[], None],
) -> bytes:
    """The certificate of the endpoint we want, if it is one we trust."""
    endpoints = await client.connect_and_get_server_endpoints()
    policy_uri = POLICIES[cfg.security_policy].URI
    mode = getattr(ua.MessageSecurityMode, cfg.security_mode)
    for ep in endpoints:
        if ep.SecurityPolicyUri == policy_uri and ep.SecurityMode == mode:
            der = _first_certificate(ep.ServerCertificate or b"")
            if der not in trusted:
                on_rejected()
                raise RefusedError(
                    f"the server's certificate (SHA-256 {fingerprint(der)}) is not in "
                    "trusted_server_certs"
                )
            return der
    raise RefusedError(f"the server offers no {cfg.security_policy}/{cfg.security_mode} endpoint")


async def close_session(client: Client, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await client.disconnect()
    except (*FAULTS, RuntimeError, AttributeError):
        pass  # the session is gone either way; the server times it out


def _first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER chain (servers may send theirs with its issuers)."""
    if len(der) < 4 or der[1] != 0x82:
        return der
    return der[: int.from_bytes(der[2:4], "big") + 4]


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
