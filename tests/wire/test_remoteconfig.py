"""Signed configs: what the cloud signs, what a gateway accepts, and what may not travel."""

from __future__ import annotations

import tomllib

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wire.errors import RemoteConfigError
from wire.keys import b64url_encode
from wire.remoteconfig import (
    SignedConfig,
    config_message,
    config_sha256,
    secret_problems,
    sign_config,
    verify_config,
)

BODY = b'[clock]\nsync_check = "assume_synced"\n\n[[sources]]\ntype = "test"\nrate_hz = 1\n'
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def test_a_signed_config_verifies_for_its_device_and_a_newer_version():
    signed = sign_config(KEY, "gw-1", 3, BODY)
    assert signed.sha256 == config_sha256(BODY)
    assert verify_config(KEY.public_key(), signed, device_id="gw-1", newer_than=2) == BODY
    # the message is one MessagePack array: no field can run into the next
    assert msgspec.msgpack.decode(config_message("gw-1", 3, signed.sha256, BODY)) == [
        "tierless-config-v1",
        "gw-1",
        3,
        signed.sha256,
        BODY,
    ]


def _replace(signed: SignedConfig, **changes) -> SignedConfig:
    return msgspec.structs.replace(signed, **changes)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"body": BODY.decode() + "# more\n"}, "signature"),
        ({"device_id": "gw-2"}, "signature"),
        ({"version": 4}, "signature"),
        ({"signature": b64url_encode(bytes(64))}, "signature"),
        ({"signature": "not base64!"}, "base64url"),
    ],
)
def test_a_changed_field_is_refused(change, why):
    signed = _replace(sign_config(KEY, "gw-1", 3, BODY), **change)
    with pytest.raises(RemoteConfigError, match=why):
        verify_config(KEY.public_key(), signed, device_id="gw-1", newer_than=0)


def test_another_key_device_version_or_digest_is_refused():
    signed = sign_config(KEY, "gw-1", 3, BODY)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(RemoteConfigError, match="pinned key"):
        verify_config(other.public_key(), signed, device_id="gw-1", newer_than=0)
    with pytest.raises(RemoteConfigError, match="for device 'gw-1'"):
        verify_config(KEY.public_key(), signed, device_id="gw-2", newer_than=0)
    for in_force in (3, 4):
        with pytest.raises(RemoteConfigError, match="not newer"):
            verify_config(KEY.public_key(), signed, device_id="gw-1", newer_than=in_force)
    # signed as described, but the sha256 the cloud signed is not the body's
    wrong = "0" * 64
    forged = SignedConfig(
        device_id="gw-1",
        version=3,
        sha256=wrong,
        body=BODY.decode(),
        signature=b64url_encode(KEY.sign(config_message("gw-1", 3, wrong, BODY))),
    )
    with pytest.raises(RemoteConfigError, match="sha256"):
        verify_config(KEY.public_key(), forged, device_id="gw-1", newer_than=0)


def test_secrets_and_local_sections_may_not_travel():
    text = """
[device]
id = "gw-1"
key_file = "device.key"

[cloud]
url = "https://x"

[buffer]
path = "b.db"

[[sources]]
type = "mqtt"
password_file = "mqtt.pass"
password = "hunter2"
note = "tle1.abcdefghijklmnop"

[sources.tls]
private_key = "k"
ca = "-----BEGIN PRIVATE KEY-----"
"""
    problems = secret_problems(tomllib.loads(text))
    assert problems == [
        "device: stays on the gateway; a pushed config may not hold [device]",
        "cloud: stays on the gateway; a pushed config may not hold [cloud]",
        "buffer: stays on the gateway; a pushed config may not hold [buffer]",
        "sources[0].password: looks like a secret; name a file on the gateway instead",
        "sources[0].note: holds a key or token; secrets never travel in a config",
        "sources[0].tls.private_key: looks like a secret; name a file on the gateway instead",
        "sources[0].tls.ca: holds a key or token; secrets never travel in a config",
    ]
    assert all("hunter2" not in p for p in problems)
    assert secret_problems(tomllib.loads(BODY.decode())) == []
