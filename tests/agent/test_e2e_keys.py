"""Key rotation under a running agent, against a real receiver process."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.keyfile import load_private_key, write_private_key
from tests.agent.e2e import Receiver, assert_contiguous_once, make_agent, wait_until
from wire.digest import content_digest
from wire.enrollment import rotate_pop_message
from wire.keys import b64url_encode, key_id, public_key_to_raw
from wire.signatures import TAG, sign_request

pytestmark = pytest.mark.e2e


def announce_rotation(
    receiver: Receiver, device_id: str, current: Ed25519PrivateKey, new: Ed25519PrivateKey
) -> dict[str, object]:
    """`POST /v1/keys/rotate` signed by the current key, as `edgectl rotate-key` sends it."""
    old_id, new_id = key_id(current.public_key()), key_id(new.public_key())
    pop = new.sign(rotate_pop_message(device_id, old_id, new_id))
    body = json.dumps(
        {
            "new_public_key": b64url_encode(public_key_to_raw(new.public_key())),
            "pop": b64url_encode(pop),
        }
    ).encode()
    url = f"{receiver.public_url}/v1/keys/rotate"
    headers = {"content-type": "application/json", "content-digest": content_digest(body)}
    headers.update(sign_request(current, "POST", url, headers, created=int(time.time()), tag=TAG))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def test_a_key_rotated_under_a_running_agent_takes_over(tmp_path, receiver, agents):
    agent = make_agent(
        tmp_path / "gw",
        receiver.url,
        receiver,
        agents,
        sources='[[sources]]\ntype = "test"\nrate_hz = 100\nseries = 1\n',
        cloud={"batch_interval_ms": 50},
    )
    key_file = tmp_path / "gw" / "keys" / "device.key"
    old = load_private_key(key_file)
    old_id = key_id(old.public_key())

    def keyids() -> list[str]:
        return [k for (k,) in receiver.query("SELECT keyid FROM batch ORDER BY seq")]

    agent.start()
    wait_until(lambda: len(keyids()) >= 3, 20, "batches with the old key", agent.log_text)
    # what `edgectl rotate-key` does: new key beside the old, announce, rename over
    new = Ed25519PrivateKey.generate()
    new_id = key_id(new.public_key())
    next_file = key_file.with_name("device.key.next")
    write_private_key(next_file, new)
    answer = announce_rotation(receiver, "gw-e2e", old, new)
    assert (answer["keyid"], answer["old_keyid"]) == (new_id, old_id)
    os.replace(next_file, key_file)
    wait_until(
        lambda: keyids()[-3:] == [new_id] * 3, 20, "batches with the new key", agent.log_text
    )
    status = agent.status()
    assert agent.stop() == 0
    ids = keyids()
    switch = ids.index(new_id)
    assert switch >= 3
    assert ids == [old_id] * switch + [new_id] * (len(ids) - switch)  # one switch, for good
    device = receiver.device("gw-e2e")
    assert (device["gaps"], device["forks"]) == (0, 0)
    assert_contiguous_once(receiver.readings("gw-e2e"), series=1)  # nothing refused or lost
    assert status["key"] == {"keyid": new_id, "reload_error": None}
    assert f"signing with {new_id} (was {old_id})" in agent.log_text()
