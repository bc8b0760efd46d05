"""`edgectl rotate-key`: replace the device key, signed for by the current one, with an overlap.

Files (beside the key named by `device.key_file` in agent.toml):
    device.key        the current key: what the agent signs with
    device.key.next   the new key, between step 1 and step 3

Steps; a crash between any two leaves a state the next run finishes:
1. `prepare`: if `device.key.next` exists, reuse it (an earlier run stopped); else generate the
   new key and write it there, 0600, atomically.
2. `announce`: POST /v1/keys/rotate signed by the current key, carrying the new public key and
   its proof of possession. The receiver makes the new key active and keeps the old one valid
   for the overlap (7 days by default), so an agent still signing with the old key loses
   nothing. Repeating the request gets the same answer. If the receiver refuses the current key
   (its overlap ended before this run), a signed probe with the new key tells whether the
   rotation had in fact happened; then we go on to step 3.
3. `swap`: rename `device.key.next` over `device.key` (atomic), fsync the directory.

A crash after step 3 leaves a finished rotation; running again then starts a new rotation,
which is harmless. A running agent checks its key file before every upload and switches to the
new key by itself; until it does, its old key works for the overlap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning import agentconfig, secretfiles
from provisioning.client import Receiver, normalise_url
from provisioning.errors import ProvisioningError, RefusedError
from wire.http import Rotated
from wire.keys import key_id

NEXT_SUFFIX = ".next"
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RotateResult:
    device_id: str
    old_keyid: str
    new_keyid: str
    old_not_after_ms: int | None  # None when recovered by the probe (the overlap had ended)


def next_key_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + NEXT_SUFFIX)


def prepare(key_file: Path, say: Say) -> Ed25519PrivateKey:
    """Step 1: the new key, from `<key>.next` if an earlier run left it, else made now."""
    path = next_key_path(key_file)
    if secretfiles.exists(path):
        say(f"resuming an unfinished rotation with the key in {path}")
        return secretfiles.load_private_key(path)
    key = Ed25519PrivateKey.generate()
    secretfiles.write_private_key(path, key, replace=False)
    _same_owner(path, key_file)
    return key


def announce(
    receiver: Receiver,
    current: Ed25519PrivateKey,
    new: Ed25519PrivateKey,
    device_id: str,
) -> Rotated | None:
    """Step 2: tell the receiver. None when only the probe with the new key succeeded."""
    try:
        return receiver.rotate(current, new, device_id)
    except RefusedError as refused:
        try:
            receiver.chain_head(new)
        except ProvisioningError:
            raise RefusedError(
                f"rotation refused: {refused}. The current key is revoked or past its "
                "overlap, or the device is disabled: re-enrol this gateway "
                "(edgectl enroll --replace with a new token)"
            ) from refused
        return None


def swap(key_file: Path) -> None:
    """Step 3: the new key becomes the current one."""
    secretfiles.move_into_place(next_key_path(key_file), key_file)


def rotate(
    directory: Path,
    *,
    say: Say,
    config_file: Path | None = None,
    transport: httpx.BaseTransport | None = None,
) -> RotateResult:
    config = agentconfig.read(config_file or directory / agentconfig.CONFIG_NAME)
    url = normalise_url(config.cloud_url, allow_insecure_http=config.allow_insecure_http)
    current = secretfiles.load_private_key(config.key_file)
    new = prepare(config.key_file, say)
    old_keyid, new_keyid = key_id(current.public_key()), key_id(new.public_key())
    with Receiver(url, ca_file=config.ca_file, transport=transport) as receiver:
        rotated = announce(receiver, current, new, config.device_id)
    if rotated is not None and rotated.keyid != new_keyid:
        raise RefusedError(
            f"the receiver activated key {rotated.keyid}, not ours ({new_keyid}); nothing swapped"
        )
    swap(config.key_file)
    say(f"rotated the key of {config.device_id!r}: {old_keyid} -> {new_keyid}")
    return RotateResult(
        config.device_id,
        old_keyid,
        new_keyid,
        None if rotated is None else rotated.old_not_after_ms,
    )


def _same_owner(path: Path, reference: Path) -> None:
    """As root, give the new key the current key's owner (the agent's user)."""
    if os.geteuid() != 0:
        return
    st = reference.stat(follow_symlinks=False) if reference.exists() else None
    if st is not None and (st.st_uid, st.st_gid) != (0, 0):
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
