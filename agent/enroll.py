"""Enrolling a gateway: make its key, keep it private, prove possession to the receiver.

Steps (security-design §3.2): generate an Ed25519 key on this machine; write it 0600 atomically
*before* talking to the receiver (an enrolment the receiver accepted must never be left without
its key); POST /v1/enroll with the one-time token, signed by the new key (tag
`tierless-enroll-v1`): that signature is the proof of possession. The key never leaves the file.

`edgectl enroll` and the tests call `enroll()`; the HTTP exchange itself lives in
`agent.uplink.post_enroll`, the agent's one HTTP module.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.keyfile import write_private_key
from agent.uplink import Enrolled, make_client, post_enroll


async def enroll(
    *,
    url: str,
    token: str,
    device_id: str,
    key_file: str | Path,
    ca_file: str | None = None,
    overwrite: bool = False,
    timeout_s: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Enrolled:
    """Create the device key in `key_file` and enrol it; EnrollError or KeyFileError on failure.

    Without `overwrite` an existing key file is refused (KeyFileError): replacing a working key
    by accident would lock the device out.
    """
    key = Ed25519PrivateKey.generate()
    write_private_key(key_file, key, overwrite=overwrite)
    async with make_client(
        ca_file=ca_file, trust_env=False, timeout_s=timeout_s, transport=transport
    ) as client:
        return await post_enroll(
            client,
            base_url=url,
            key=key,
            token=token,
            device_id=device_id,
            now_ms=time.time_ns() // 1_000_000,
            timeout_s=timeout_s,
        )
