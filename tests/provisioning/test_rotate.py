"""`edgectl rotate-key`: the new key is signed for by the current one, the old one overlaps, and
a run after a crash at any step finishes the rotation without a stray key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioning import rotate as rotate_module
from provisioning import secretfiles
from provisioning.client import Receiver
from tests.provisioning.conftest import Edgectl, RealReceiver
from wire.keys import key_id


def enrolled(ctl: Edgectl, receiver: RealReceiver, directory: Path, device_id: str) -> Path:
    r = ctl("enroll", "--dir", directory, "--device", device_id, stdin=receiver.token(device_id))
    assert r.code == 0, r.text
    return directory


def keyid_in(path: Path) -> str:
    return key_id(secretfiles.load_private_key(path).public_key())


def test_rotate_swaps_the_key_and_keeps_the_old_one_for_the_overlap(tmp_path, receiver, ctl):
    gw = enrolled(ctl, receiver, tmp_path / "gw", "gw-rot")
    old = keyid_in(gw / "device.key")
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 0, r.text
    new = keyid_in(gw / "device.key")
    assert new != old
    assert f"new key {new} is active" in r.out
    assert f"old key {old} stays valid until" in r.out
    assert stat.S_IMODE((gw / "device.key").stat().st_mode) == 0o600
    assert not (gw / "device.key.next").exists()
    assert receiver.keys("gw-rot") == {old: "retiring", new: "active"}
    # the new key is what the receiver accepts as active; the old one signs for a while yet
    with Receiver(receiver.url) as rx:
        rx.chain_head(secretfiles.load_private_key(gw / "device.key"))


def test_crash_after_the_new_key_was_written(tmp_path, receiver, ctl):
    gw = enrolled(ctl, receiver, tmp_path / "gw", "gw-crash1")
    old = keyid_in(gw / "device.key")
    rotate_module.prepare(gw / "device.key", say=lambda _: None)  # step 1, then the crash
    pending = keyid_in(gw / "device.key.next")
    assert receiver.keys("gw-crash1") == {old: "active"}
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 0, r.text
    assert "resuming an unfinished rotation" in r.err
    assert keyid_in(gw / "device.key") == pending
    assert receiver.keys("gw-crash1") == {old: "retiring", pending: "active"}


def test_crash_after_the_receiver_accepted(tmp_path, receiver, ctl):
    gw = enrolled(ctl, receiver, tmp_path / "gw", "gw-crash2")
    current = secretfiles.load_private_key(gw / "device.key")
    new = rotate_module.prepare(gw / "device.key", say=lambda _: None)
    with Receiver(receiver.url) as rx:
        rotate_module.announce(rx, current, new, "gw-crash2")  # step 2, then the crash
    old, pending = key_id(current.public_key()), key_id(new.public_key())
    assert receiver.keys("gw-crash2") == {old: "retiring", pending: "active"}
    assert keyid_in(gw / "device.key") == old  # the files were not swapped yet
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 0, r.text
    assert keyid_in(gw / "device.key") == pending
    assert receiver.keys("gw-crash2") == {old: "retiring", pending: "active"}  # no third key


def test_crash_in_the_swap(tmp_path, receiver, ctl, monkeypatch):
    gw = enrolled(ctl, receiver, tmp_path / "gw", "gw-crash3")
    old = keyid_in(gw / "device.key")
    real_replace = os.replace

    def dies(src, dst):
        if str(src).endswith(".next"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", dies)
        assert ctl("rotate-key", "--dir", gw).code == 130
    pending = keyid_in(gw / "device.key.next")
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 0, r.text
    assert keyid_in(gw / "device.key") == pending
    assert receiver.keys("gw-crash3") == {old: "retiring", pending: "active"}


def test_rerun_after_the_overlap_ended_finishes_by_probing(tmp_path, receiver, ctl):
    """The rotation went through but the swap did not, and the old key is gone meanwhile."""
    gw = enrolled(ctl, receiver, tmp_path / "gw", "gw-late")
    current = secretfiles.load_private_key(gw / "device.key")
    new = rotate_module.prepare(gw / "device.key", say=lambda _: None)
    with Receiver(receiver.url) as rx:
        rotate_module.announce(rx, current, new, "gw-late")
    assert ctl("keys", "revoke", key_id(current.public_key())).code == 0
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 0, r.text
    assert keyid_in(gw / "device.key") == key_id(new.public_key())
    assert "stays valid" not in r.out


def test_rotation_of_a_revoked_device_is_refused(tmp_path, receiver, ctl):
    gw = enrolled(ctl, receiver, tmp_path / "gw", "gw-revoked")
    before = (gw / "device.key").read_bytes()
    assert ctl("devices", "revoke", "gw-revoked").code == 0
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 12
    assert "re-enrol" in r.err
    assert (gw / "device.key").read_bytes() == before  # nothing swapped


@pytest.mark.parametrize("unsafe", ["0640", "symlink"])
def test_unsafe_key_file_is_refused(tmp_path, receiver, ctl, unsafe):
    gw = enrolled(ctl, receiver, tmp_path / "gw", f"gw-unsafe-{unsafe}")
    key = gw / "device.key"
    if unsafe == "0640":
        key.chmod(0o640)
        expected = f"Permissions 0640 for '{key}' are too open; chmod 600 '{key}'"
    else:
        real = tmp_path / "elsewhere.key"
        key.rename(real)
        key.symlink_to(real)
        expected = f"key file '{key}' is a symlink; refusing to follow it"
    r = ctl("rotate-key", "--dir", gw)
    assert r.code == 3
    assert expected in r.err
    assert not (gw / "device.key.next").exists()
    doctor = ctl("doctor", "--dir", gw)
    assert doctor.code == 1
    assert f"FAIL  key file: {expected}" in doctor.out


def test_no_config_in_the_directory(tmp_path, ctl):
    r = ctl("rotate-key", "--dir", tmp_path)
    assert r.code == 3
    assert "no agent configuration here" in r.err
