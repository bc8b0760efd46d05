"""`edgectl enroll` against a real receiver: the happy path, every refusal with its own message
and exit code, and the runs that follow a crash."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from provisioning import secretfiles
from provisioning.enroll import PENDING_SUFFIX
from tests.provisioning.conftest import Edgectl, RealReceiver, edge_agent
from wire.keys import b64url_encode, key_id, load_private_key_pem, public_key_to_raw


def write_token(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def test_enrol_writes_key_and_a_config_the_agent_accepts(tmp_path, receiver, ctl):
    token = write_token(tmp_path / "t", receiver.token("gw-happy"))
    gw = tmp_path / "gw"
    r = ctl("enroll", "--dir", gw, "--device", "gw-happy", "--token-file", token)
    assert r.code == 0, r.text
    key_file = gw / "device.key"
    key = secretfiles.load_private_key(key_file)
    keyid = key_id(key.public_key())
    assert f"enrolled gw-happy with key {keyid}" in r.out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((gw / "agent.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE(gw.stat().st_mode) == 0o700
    assert not (gw / f"device.key{PENDING_SUFFIX}").exists()
    assert receiver.keys("gw-happy") == {keyid: "active"}
    assert receiver.device("gw-happy")["status"] == "active"
    check = edge_agent("check-config", gw / "agent.toml")
    assert check.returncode == 0, check.stderr
    # the cloud's config-signing key is pinned beside the device key (its public half only)
    pinned = gw / "cloud-config.pub"
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o600
    signing = load_private_key_pem(
        (receiver.directory / "tierless-config-signing.key").read_bytes()
    )
    assert pinned.read_text().strip() == b64url_encode(public_key_to_raw(signing.public_key()))
    # the private key is nowhere but in its file: not in the config, not in the output
    pem = key_file.read_text()
    body = pem.splitlines()[1]
    assert body not in (gw / "agent.toml").read_text()
    assert body not in r.text


def test_token_on_stdin_and_the_token_flag_warns(tmp_path, receiver, ctl):
    r = ctl(
        "enroll", "--dir", tmp_path / "a", "--device", "gw-stdin",
        stdin=receiver.token("gw-stdin") + "\n",
    )  # fmt: skip
    assert r.code == 0, r.text
    r = ctl(
        "enroll", "--dir", tmp_path / "b", "--device", "gw-flag",
        "--token", receiver.token("gw-flag"),
    )  # fmt: skip
    assert r.code == 0, r.text
    assert "process list" in r.err or "(ps)" in r.err


def test_used_token_is_refused_with_its_own_exit_code(tmp_path, receiver, ctl):
    token = write_token(tmp_path / "t", receiver.token("gw-reuse"))
    r = ctl("enroll", "--dir", tmp_path / "a", "--device", "gw-reuse", "--token-file", token)
    assert r.code == 0, r.text
    r = ctl("enroll", "--dir", tmp_path / "b", "--device", "gw-reuse", "--token-file", token)
    assert r.code == 6
    assert "refused the enrolment token" in r.err
    assert "already used" in r.err
    assert r.err.count("\n") == 1
    assert "Traceback" not in r.err
    assert not (tmp_path / "b" / "device.key").exists()


def test_expired_token_is_named_expired(tmp_path, receiver, ctl):
    token = write_token(tmp_path / "t", receiver.token("gw-expired", ttl_s=1))
    time.sleep(1.2)
    r = ctl("enroll", "--dir", tmp_path / "gw", "--device", "gw-expired", "--token-file", token)
    assert r.code == 7, r.text
    assert "expired at" in r.err
    assert "edgectl token create --device gw-expired" in r.err
    assert not (tmp_path / "gw").exists()  # refused before anything was written


def test_a_clock_ahead_of_the_receiver_does_not_refuse_a_valid_token(tmp_path, receiver, ctl):
    token = write_token(tmp_path / "t", receiver.token("gw-fastclock"))
    in_a_year = time.time_ns() // 10**6 + 365 * 86_400_000
    r = ctl(
        "enroll", "--dir", tmp_path / "gw", "--device", "gw-fastclock", "--token-file", token,
        now_ms=in_a_year,
    )  # fmt: skip
    assert r.code == 0, r.text
    assert "clock is ahead" in r.err


def test_token_for_another_device_is_named(tmp_path, receiver, ctl):
    token = write_token(tmp_path / "t", receiver.token("gw-other"))
    r = ctl("enroll", "--dir", tmp_path / "gw", "--device", "gw-mine", "--token-file", token)
    assert r.code == 8
    assert "issued for device 'gw-other', not 'gw-mine'" in r.err
    # and the receiver agrees: used anyway (bypassing the local check), it is refused
    r = ctl("enroll", "--dir", tmp_path / "gw", "--device", "gw-other", "--token-file", token)
    assert r.code == 0, r.text


def test_tampered_tokens_are_refused(tmp_path, receiver, ctl):
    good = receiver.token("gw-tamper")
    head, secret = good.rsplit(".", 1)
    flipped = secret[:-2] + ("A" if secret[-2] != "A" else "B") + secret[-1]
    r = ctl("enroll", "--dir", tmp_path / "a", "--device", "gw-tamper", stdin=f"{head}.{flipped}")
    assert r.code == 6
    assert "refused the enrolment token" in r.err
    r = ctl("enroll", "--dir", tmp_path / "b", "--device", "gw-tamper", stdin=good[:-5])
    assert r.code == 6
    assert "not an enrolment token" in r.err
    # another device's name spliced into a good token: the local check sees the name...
    forged = good.replace(good.split(".")[1], "Z3ctZm9yZ2Vk")  # b64url("gw-forged")
    r = ctl("enroll", "--dir", tmp_path / "c", "--device", "gw-forged", stdin=forged)
    assert r.code == 6, r.text  # ...and the receiver refuses it: the hash covers the whole token
    assert receiver.device("gw-tamper")["status"] == "pending"
    r = ctl("enroll", "--dir", tmp_path / "d", "--device", "gw-tamper", stdin=good)
    assert r.code == 0, r.text  # the failed attempts did not burn the real token


def test_already_enrolled_then_replace(tmp_path, receiver, ctl):
    gw = tmp_path / "gw"
    r = ctl("enroll", "--dir", gw, "--device", "gw-again", stdin=receiver.token("gw-again"))
    assert r.code == 0, r.text
    first = key_id(secretfiles.load_private_key(gw / "device.key").public_key())
    config_before = (gw / "agent.toml").read_text()
    r = ctl("enroll", "--dir", gw, "--device", "gw-again", stdin=receiver.token("gw-again"))
    assert r.code == 9
    assert "already enrolled" in r.err
    assert "--replace" in r.err
    r = ctl(
        "enroll", "--dir", gw, "--device", "gw-again", "--replace",
        stdin=receiver.token("gw-again"),
    )  # fmt: skip
    assert r.code == 0, r.text
    second = key_id(secretfiles.load_private_key(gw / "device.key").public_key())
    assert second != first
    assert (gw / "agent.toml").read_text() == config_before  # an existing config is kept
    assert receiver.keys("gw-again") == {first: "active", second: "active"}


def test_directory_of_another_device_is_refused(tmp_path, receiver, ctl):
    gw = tmp_path / "gw"
    r = ctl("enroll", "--dir", gw, "--device", "gw-one", stdin=receiver.token("gw-one"))
    assert r.code == 0, r.text
    r = ctl(
        "enroll", "--dir", gw, "--device", "gw-two", "--replace", stdin=receiver.token("gw-two")
    )
    assert r.code == 3
    assert "configuration of device 'gw-one'" in r.err


def test_a_run_after_a_crash_resumes_with_the_same_key(tmp_path, receiver, ctl, monkeypatch):
    from provisioning import enroll as enroll_module

    token = write_token(tmp_path / "t", receiver.token("gw-crash"))
    gw = tmp_path / "gw"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the power went after the receiver accepted the key

    with monkeypatch.context() as m:
        m.setattr(enroll_module, "_install_key", crash)
        r = ctl("enroll", "--dir", gw, "--device", "gw-crash", "--token-file", token)
    assert r.code == 130
    pending = gw / f"device.key{PENDING_SUFFIX}"
    keyid = key_id(secretfiles.load_private_key(pending).public_key())
    assert receiver.keys("gw-crash") == {keyid: "active"}  # enrolled, key still pending here
    r = ctl("enroll", "--dir", gw, "--device", "gw-crash", "--token-file", token)
    assert r.code == 0, r.text
    assert "resuming" in r.err
    assert key_id(secretfiles.load_private_key(gw / "device.key").public_key()) == keyid
    assert not pending.exists()
    assert receiver.keys("gw-crash") == {keyid: "active"}


def test_a_stale_pending_key_does_not_block_a_new_token(tmp_path, receiver, ctl, monkeypatch):
    """The pending key was enrolled with token A (answer lost), the installer got token B."""
    from provisioning import enroll as enroll_module

    gw = tmp_path / "gw"
    with monkeypatch.context() as m:
        m.setattr(enroll_module, "_install_key", lambda *a, **k: (_ for _ in ()).throw(OSError))
        ctl("enroll", "--dir", gw, "--device", "gw-stale", stdin=receiver.token("gw-stale"))
    r = ctl("enroll", "--dir", gw, "--device", "gw-stale", stdin=receiver.token("gw-stale"))
    assert r.code == 0, r.text
    assert "trying a new key" in r.err
    assert len(receiver.keys("gw-stale")) == 2


def test_receiver_unreachable(tmp_path, ctl):
    from tests.cloud.helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    token = "tle1.Z3ctMQ.9999999999999.0123456789abcdef." + "A" * 43
    r = ctl("enroll", "--dir", tmp_path / "gw", "--device", "gw-1", "--cloud", url, stdin=token)
    assert r.code == 4
    assert f"cannot reach the receiver at {url}" in r.err
    assert r.err.count("\n") == 1


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory):
    import trustme

    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = directory / "cert.pem", directory / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    r = RealReceiver(directory, tls=(chain, key))
    r.start()
    try:
        yield r
    finally:
        r.stop()


def test_tls_untrusted_then_trusted_with_ca_file(tmp_path, tls_receiver):
    ctl = Edgectl(
        {
            "TIERLESS_CLOUD_URL": tls_receiver.url,
            "TIERLESS_ADMIN_TOKEN_FILE": str(tls_receiver.admin_file),
        }
    )
    ca = tls_receiver.directory / "ca.pem"
    r = ctl("token", "create", "--device", "gw-tls")
    assert r.code == 5
    assert "TLS" in r.err
    assert "--ca-file" in r.err
    token = ctl("token", "create", "--device", "gw-tls", "--ca-file", ca)
    assert token.code == 0, token.text
    gw = tmp_path / "gw"
    r = ctl("enroll", "--dir", gw, "--device", "gw-tls", stdin=token.out)
    assert r.code == 5
    assert not (gw / "device.key").exists()
    r = ctl("enroll", "--dir", gw, "--device", "gw-tls", "--ca-file", ca, stdin=token.out)
    assert r.code == 0, r.text
    assert (gw / "ca.pem").read_bytes() == ca.read_bytes()
    assert 'ca_file = "ca.pem"' in (gw / "agent.toml").read_text()
    check = edge_agent("check-config", gw / "agent.toml")
    assert check.returncode == 0, check.stderr
    doctor = ctl("doctor", "--dir", gw)
    assert "PASS  receiver: https://127.0.0.1" in doctor.out, doctor.out
    assert "PASS  enrolment" in doctor.out

    # a fleet bundle carries the CA, and a gateway enrols from it over TLS
    plan = tmp_path / "plan.csv"
    plan.write_text("device_id,site\ngw-tls-2,s\n")
    r = ctl("fleet", "plan", plan, "--out", tmp_path / "out", "--ca-file", ca)
    assert r.code == 0, r.text
    bundle = tmp_path / "out" / "gw-tls-2"
    assert (bundle / "ca.pem").read_bytes() == ca.read_bytes()
    r = Edgectl({})("enroll", "--bundle", bundle, "--dir", tmp_path / "gw2")
    assert r.code == 0, r.text
    assert (tmp_path / "gw2" / "ca.pem").read_bytes() == ca.read_bytes()


def test_owner_gets_the_files(tmp_path, receiver, ctl):
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("--owner chowns, which needs root")
    nobody = pwd.getpwnam("nobody")
    gw = tmp_path / "gw"
    r = ctl(
        "enroll", "--dir", gw, "--device", "gw-owned", "--owner", "nobody",
        stdin=receiver.token("gw-owned"),
    )  # fmt: skip
    assert r.code == 0, r.text
    for path in (gw, gw / "device.key", gw / "agent.toml"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    # rotation as root keeps the agent's user as the owner of the new key
    assert ctl("rotate-key", "--dir", gw).code == 0
    assert (gw / "device.key").stat().st_uid == nobody.pw_uid


def test_existing_config_for_another_receiver(tmp_path, receiver, ctl):
    gw = tmp_path / "gw"
    r = ctl("enroll", "--dir", gw, "--device", "gw-moved", stdin=receiver.token("gw-moved"))
    assert r.code == 0, r.text
    config = gw / "agent.toml"
    config.write_text(config.read_text().replace(receiver.url, "https://old.example.com"))
    r = ctl(
        "enroll", "--dir", gw, "--device", "gw-moved", "--replace",
        stdin=receiver.token("gw-moved"),
    )  # fmt: skip
    assert r.code == 3
    assert "sends to https://old.example.com" in r.err


def test_plain_http_to_a_remote_host_is_refused(tmp_path, ctl):
    r = ctl(
        "enroll", "--dir", tmp_path, "--device", "gw-1", "--cloud", "http://10.1.2.3",
        stdin="tle1.x",
    )  # fmt: skip
    assert r.code == 3
    assert "plain http" in r.err


def test_console_script_prints_one_line_and_no_traceback(tmp_path, receiver):
    import os
    import subprocess

    from tests.provisioning.conftest import BIN

    done = subprocess.run(
        [str(BIN / "edgectl"), "enroll", "--dir", str(tmp_path), "--device", "gw-x"],
        input="not-a-token\n",
        capture_output=True,
        text=True,
        env={**os.environ, "TIERLESS_CLOUD_URL": receiver.url},
        check=False,
        timeout=60,
    )
    assert done.returncode == 6
    assert done.stderr.startswith("edgectl: that is not an enrolment token")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_enrolling_again_takes_the_device_and_receiver_from_agent_toml(tmp_path, receiver, ctl):
    gw = tmp_path / "gw"
    r = ctl("enroll", "--dir", gw, "--device", "gw-named", stdin=receiver.token("gw-named"))
    assert r.code == 0, r.text
    # neither --device nor --cloud (nor TIERLESS_CLOUD_URL): agent.toml names both
    r = ctl(
        "enroll", "--dir", gw, "--replace", stdin=receiver.token("gw-named"),
        env={"TIERLESS_CLOUD_URL": ""},
    )  # fmt: skip
    assert r.code == 0, r.text
    assert "enrolled gw-named with key" in r.out
    assert len(receiver.keys("gw-named")) == 2
    # a new directory still needs them
    r = ctl("enroll", "--dir", tmp_path / "new", stdin=receiver.token("gw-x"))
    assert r.code == 3
    assert "--device ID is required" in r.err
