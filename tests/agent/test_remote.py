"""agent.remote: what the agent runs at start, and the files a pushed config lives in."""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import ConfigError
from agent.health import config_version
from agent.remote import (
    GOOD_NAME,
    PENDING_NAME,
    PINNED_NAME,
    PUSHED_NAME,
    compose,
    load_running,
    local_sections,
    write_atomic,
)
from tests.agent.helpers import write_config
from wire.keys import b64url_encode, public_key_to_raw
from wire.remoteconfig import sign_config

KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
PUSHED = b'[[sources]]\ntype = "test"\nname = "pushed"\nrate_hz = 7\n'


@pytest.fixture
def gw(tmp_path):
    path = write_config(tmp_path, url="https://ingest.test", device_id="gw-1")
    (tmp_path / PINNED_NAME).write_text(b64url_encode(public_key_to_raw(KEY.public_key())))
    return path


def test_without_a_pushed_config_the_file_runs_as_it_is(gw):
    running = load_running(gw)
    assert running.version == config_version(gw.read_bytes())
    assert running.pushed_version == 0
    assert [s.name for s in running.config.sources] == ["test"]


def test_a_pushed_config_runs_with_the_gateways_own_sections(gw):
    signed = sign_config(KEY, "gw-1", 4, PUSHED)
    write_atomic(gw.parent / PUSHED_NAME, msgspec.json.encode(signed))
    running = load_running(gw)
    assert (running.version, running.pushed_version) == ("v4", 4)
    assert [(s.name, getattr(s, "rate_hz", None)) for s in running.config.sources] == [
        ("pushed", 7.0)
    ]
    local = load_running(gw).config
    assert (local.device.id, local.cloud.url) == ("gw-1", "https://ingest.test")
    assert local.buffer.path == str(gw.parent / "data" / "buffer.db")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b"rate_hz = 7", b"rate_hz = 8"),  # body changed after signing
        lambda b: b"not json",
    ],
)
def test_a_damaged_pushed_file_is_not_run_the_last_good_one_is(gw, tamper, caplog):
    good = sign_config(KEY, "gw-1", 2, PUSHED)
    write_atomic(gw.parent / GOOD_NAME, msgspec.json.encode(good))
    newer = sign_config(KEY, "gw-1", 3, PUSHED)
    write_atomic(gw.parent / PUSHED_NAME, tamper(msgspec.json.encode(newer)))
    assert load_running(gw).version == "v2"
    assert f"{PUSHED_NAME} is not run" in caplog.text
    (gw.parent / GOOD_NAME).unlink()
    assert load_running(gw).version == config_version(gw.read_bytes())  # the file alone


def test_an_apply_interrupted_inside_its_window_is_rolled_back_at_start(gw):
    directory = gw.parent
    good = msgspec.json.encode(sign_config(KEY, "gw-1", 2, PUSHED))
    write_atomic(directory / GOOD_NAME, good)
    write_atomic(directory / PUSHED_NAME, msgspec.json.encode(sign_config(KEY, "gw-1", 3, PUSHED)))
    write_atomic(directory / PENDING_NAME, b"v3")
    running = load_running(gw)
    assert (running.version, running.note) == (
        "v2",
        "rolled back: interrupted inside the health window",
    )
    assert (directory / PUSHED_NAME).read_bytes() == good
    assert not (directory / PENDING_NAME).exists()
    assert load_running(gw).note is None  # said once
    # with no good file, the config before the apply was agent.toml alone
    (directory / GOOD_NAME).unlink()
    write_atomic(directory / PENDING_NAME, b"v3")
    assert load_running(gw).version == config_version(gw.read_bytes())
    assert not (directory / PUSHED_NAME).exists()


def test_another_devices_config_is_not_run(gw):
    write_atomic(gw.parent / PUSHED_NAME, msgspec.json.encode(sign_config(KEY, "gw-2", 1, PUSHED)))
    assert load_running(gw).pushed_version == 0


def test_local_sections_are_plain_toml_and_come_last():
    text = '[device]\nid = "gw \\"1\\""\nkey_file = "k"\n[cloud]\nurl = "u"\ntimeout_s = 2.5\n'
    text += 'allow_insecure_http = true\n[[sources]]\ntype = "test"\n'
    local = local_sections(text, "agent.toml")
    assert local.startswith('[device]\nid = "gw \\"1\\""')
    assert "sources" not in local
    assert "timeout_s = 2.5" in local
    assert "allow_insecure_http = true" in local
    assert compose("a = 1\n", local).endswith(local)
    with pytest.raises(ConfigError, match="device.tags: expected a plain value"):
        local_sections('[device]\ntags = ["a"]\n', "agent.toml")


def test_write_atomic_replaces_whole_files(tmp_path):
    target = tmp_path / "f.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temporary left
