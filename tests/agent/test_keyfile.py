"""The device key file: OpenSSH-style refusals, atomic 0600 writes."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import KeyFileError
from agent.keyfile import load_private_key, write_private_key
from wire.keys import key_id


@pytest.fixture
def keydir(tmp_path):
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    return d


def test_round_trip_is_0600_and_same_key(keydir):
    key = Ed25519PrivateKey.generate()
    path = keydir / "device.key"
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id(load_private_key(path).public_key()) == key_id(key.public_key())
    assert [p.name for p in keydir.iterdir()] == ["device.key"]  # no temp file left behind


def test_refuses_to_replace_without_overwrite(keydir):
    path = keydir / "device.key"
    write_private_key(path, Ed25519PrivateKey.generate())
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_key(path, Ed25519PrivateKey.generate())
    new = Ed25519PrivateKey.generate()
    write_private_key(path, new, overwrite=True)
    assert key_id(load_private_key(path).public_key()) == key_id(new.public_key())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_other_readable_is_refused_like_openssh(keydir, mode):
    path = keydir / "device.key"
    write_private_key(path, Ed25519PrivateKey.generate())
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    assert str(info.value) == (
        f"Permissions {mode:04o} for '{path}' are too open; chmod 600 '{path}' "
        "(a key file must not be readable by group or others)"
    )


def test_symlink_is_refused(keydir):
    real = keydir / "real.key"
    write_private_key(real, Ed25519PrivateKey.generate())
    link = keydir / "device.key"
    link.symlink_to(real)
    with pytest.raises(KeyFileError, match="is a symlink"):
        load_private_key(link)


def test_missing_not_regular_and_garbage(keydir):
    with pytest.raises(KeyFileError, match=r"does not exist \(enrol the device first\)"):
        load_private_key(keydir / "nope.key")
    fifo = keydir / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_private_key(fifo)
    junk = keydir / "junk.key"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an Ed25519 private key"):
        load_private_key(junk)


def test_world_writable_directory_is_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    path = d / "device.key"
    write_private_key(path, Ed25519PrivateKey.generate())
    d.chmod(0o777)
    with pytest.raises(KeyFileError, match=f"writable by group or others; chmod 700 '{d}'"):
        load_private_key(path)


def test_wrong_owner_is_refused(keydir):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    path = keydir / "device.key"
    write_private_key(path, Ed25519PrivateKey.generate())
    os.chown(path, 12345, -1)
    with pytest.raises(KeyFileError, match="owned by uid 12345"):
        load_private_key(path)


def rotate_file(path, key, *, mode=0o600):
    """What `edgectl rotate-key` does: write `<key>.next`, rename it over the key file."""
    nxt = path.with_name(path.name + ".next")
    write_private_key(nxt, key)
    nxt.chmod(mode)
    os.replace(nxt, path)


def test_device_key_follows_a_rotated_file(keydir, monkeypatch, caplog):
    import agent.keyfile as keyfile
    from agent.keyfile import DeviceKey

    path = keydir / "device.key"
    old = Ed25519PrivateKey.generate()
    write_private_key(path, old)
    dk = DeviceKey(path)
    assert dk.keyid == key_id(old.public_key())
    loads = []
    real_load = keyfile._load

    def counting_load(p):
        loads.append(p)
        return real_load(p)

    monkeypatch.setattr(keyfile, "_load", counting_load)
    assert dk.refresh() is False
    assert loads == []  # unchanged file: a stat, no read
    new = Ed25519PrivateKey.generate()
    rotate_file(path, new)
    with caplog.at_level("INFO", logger="agent.keyfile"):
        assert dk.refresh() is True
    assert dk.keyid == key_id(new.public_key())
    assert dk.key.private_bytes_raw() == new.private_bytes_raw()
    assert (dk.reloads, dk.error) == (1, None)
    assert f"signing with {dk.keyid}" in caplog.text  # the new key id is logged
    assert dk.refresh() is False


def test_an_unusable_new_key_file_keeps_the_current_key_until_fixed(keydir):
    from agent.keyfile import DeviceKey

    path = keydir / "device.key"
    old = Ed25519PrivateKey.generate()
    write_private_key(path, old)
    dk = DeviceKey(path)
    rotate_file(path, Ed25519PrivateKey.generate(), mode=0o644)  # a careless rotation
    assert dk.refresh() is False
    assert dk.keyid == key_id(old.public_key())  # still signing with the old key
    assert "too open" in (dk.error or "")
    assert dk.refresh() is False  # the same bad file is not read again
    assert dk.failures == 1
    path.chmod(0o600)  # the fix changes only the mode (ctime), not the content
    assert dk.refresh() is True
    assert dk.error is None
    path.unlink()  # gone: reported, the key in use stays
    assert dk.refresh() is False
    assert "does not exist" in (dk.error or "")
