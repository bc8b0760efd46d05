"""Operator commands against a real receiver: tokens, devices, revocation, and the admin token
rules (a file or the environment, never shown)."""

from __future__ import annotations

import json
import stat

import pytest

from provisioning.cli import _parser
from provisioning.errors import LocalError
from provisioning.inputs import parse_duration
from tests.provisioning.conftest import Edgectl


def test_token_create_prints_only_the_token(receiver, ctl):
    r = ctl("token", "create", "--device", "gw-op-1", "--ttl", "2h")
    assert r.code == 0, r.text
    token = r.out.strip()
    assert token.startswith("tle1.")
    assert "\n" not in token
    assert "valid once until" in r.err
    device = receiver.device("gw-op-1")
    assert device["status"] == "pending"
    assert device["keys"] == []


def test_token_create_to_a_file(tmp_path, ctl):
    out = tmp_path / "gw.token"
    r = ctl("token", "create", "--device", "gw-op-2", "--out", out)
    assert r.code == 0, r.text
    assert r.out == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().startswith("tle1.")
    assert ctl("token", "create", "--device", "gw-op-2", "--out", out).code == 3  # no overwrite


def test_ttl_out_of_range_is_said_in_the_units_given(ctl):
    r = ctl("token", "create", "--device", "gw-op-3", "--ttl", "90d")
    assert r.code == 3
    assert "--ttl 90d: an enrolment token is valid at most 30d" in r.err
    assert "ttl_s" not in r.err  # not the receiver's field name in seconds
    assert ctl("token", "create", "--device", "gw-op-3", "--ttl", "30d").code == 0
    assert ctl("fleet", "plan", "x.csv", "--out", "x", "--ttl", "31d").code == 3


def test_devices_list_and_show(tmp_path, receiver, ctl):
    assert ctl("enroll", "--dir", tmp_path, "--device", "gw-op-4",
               stdin=receiver.token("gw-op-4")).code == 0  # fmt: skip
    table = ctl("devices", "list")
    assert table.code == 0
    header, *rows = table.out.splitlines()
    assert header.split() == [
        "DEVICE", "STATUS", "HEAD", "LAST", "SEEN", "READINGS", "GAPS", "FORKS", "DROPS", "CLOCK",
        "HEALTH", "BACKLOG", "SOURCES", "CONFIG",
    ]  # fmt: skip
    assert any(r.split()[:3] == ["gw-op-4", "active", "0"] for r in rows), table.out
    listed = json.loads(ctl("devices", "list", "--json").out)["devices"]
    assert {"device_id", "status", "head_seq", "gaps", "dropped", "clock"} <= set(listed[0])
    shown = ctl("devices", "show", "gw-op-4")
    assert shown.code == 0
    keyid = receiver.device("gw-op-4")["keys"][0]["keyid"]
    for line in ("status:       active", "chain head:   seq 0", f"  {keyid}  active"):
        assert line in shown.out, shown.out
    detail = json.loads(ctl("devices", "show", "gw-op-4", "--json").out)
    assert detail["keys"][0]["keyid"] == keyid


def test_unknown_device_and_key(ctl):
    r = ctl("devices", "show", "gw-nobody")
    assert (r.code, r.err.count("\n")) == (11, 1)
    assert "not found" in r.err
    assert ctl("keys", "revoke", "no-such-key").code == 11
    assert ctl("devices", "revoke", "gw-nobody").code == 11


def test_ids_may_start_with_a_dash(receiver, ctl):
    # About one key id in 64 starts with "-": before, `keys revoke -…` was a usage error (exit
    # 2) and the compromised key kept working.
    r = ctl("keys", "revoke", "-Xb3no-such-key")
    assert r.code == 11, r.text  # the receiver was asked: not found
    assert ctl("keys", "revoke", "--", "-Xb3no-such-key").code == 11
    assert ctl("token", "create", "--device", "-gw-op-6").code == 0
    assert receiver.device("-gw-op-6")["status"] == "pending"
    shown = ctl("devices", "show", "-gw-op-6", "--json")
    assert (shown.code, json.loads(shown.out)["device_id"]) == (0, "-gw-op-6"), shown.text
    r = ctl("devices", "disable", "--cloud", receiver.url, "-gw-op-6")
    assert (r.code, "not enrolled yet" in r.err) == (12, True), r.text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["keys", "revoke", "-abc"], {"keyid": "-abc"}),
        (["keys", "revoke", "-abc", "--cloud", "http://x"], {"keyid": "-abc", "cloud": "http://x"}),
        (["keys", "revoke", "--cloud", "-x", "--", "--json"], {"keyid": "--json", "cloud": "-x"}),
        (["devices", "show", "--json", "-gw"], {"device": "-gw", "json": True}),
        (["token", "create", "--device", "-gw", "--ttl", "2h"], {"device": "-gw", "ttl": "2h"}),
        (["enroll", "--dir", "d", "--device", "-gw", "--token-file", "-"], {"device": "-gw"}),
        (["keys", "revoke", "plain"], {"keyid": "plain"}),
    ],
)
def test_dash_ids_parse(argv, expected):
    args = _parser().parse_args(argv)
    assert {k: getattr(args, k) for k in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["devices", "list", "--jsn"],  # a command without an id still refuses unknown options
        ["keys", "revoke", "abc", "-x"],  # one id only
        ["keys", "revoke"],
    ],
)
def test_dash_ids_leave_usage_errors_alone(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2


def test_disable_enable_revoke(tmp_path, receiver, ctl):
    r = ctl("token", "create", "--device", "gw-op-5")
    r = ctl("devices", "disable", "gw-op-5")
    assert r.code == 12  # still pending: nothing to disable
    assert "not enrolled yet" in r.err
    assert ctl("enroll", "--dir", tmp_path, "--device", "gw-op-5",
               stdin=receiver.token("gw-op-5")).code == 0  # fmt: skip
    assert ctl("devices", "disable", "gw-op-5").out.strip() == "'gw-op-5' is now disabled"
    assert receiver.device("gw-op-5")["status"] == "disabled"
    assert ctl("devices", "enable", "gw-op-5").code == 0
    assert receiver.device("gw-op-5")["status"] == "active"
    keyid = receiver.device("gw-op-5")["keys"][0]["keyid"]
    r = ctl("keys", "revoke", keyid)
    assert (r.code, r.out.strip()) == (0, f"revoked key {keyid} of 'gw-op-5'")
    assert receiver.keys("gw-op-5") == {keyid: "revoked"}
    r = ctl("devices", "revoke", "gw-op-5")
    assert r.code == 0
    assert "revoked 0 key(s)" in r.out
    # every key revoked: `devices show` does not say "active" any more
    shown = ctl("devices", "show", "gw-op-5").out
    assert "status:       revoked (every key revoked: uploads refused with 403" in shown, shown
    # and so does `devices list` (it said "active": issue 14), in text and in JSON
    (row,) = [line for line in ctl("devices", "list").out.splitlines() if "gw-op-5" in line]
    assert row.split()[:2] == ["gw-op-5", "revoked"], row
    listed = json.loads(ctl("devices", "list", "--json").out)["devices"]
    assert [d["status"] for d in listed if d["device_id"] == "gw-op-5"] == ["revoked"]
    assert receiver.device("gw-op-5")["status"] == "revoked"
    assert ctl("enroll", "--dir", tmp_path, "--device", "gw-op-5", "--replace",
               stdin=receiver.token("gw-op-5")).code == 0  # fmt: skip
    assert "status:       active\n" in ctl("devices", "show", "gw-op-5").out
    (row,) = [line for line in ctl("devices", "list").out.splitlines() if "gw-op-5" in line]
    assert row.split()[:2] == ["gw-op-5", "active"], row


def test_token_create_refuses_a_stdout_file_others_can_read(tmp_path, receiver):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "TIERLESS_CLOUD_URL": receiver.url,
        "TIERLESS_ADMIN_TOKEN_FILE": str(receiver.admin_file),
    }
    argv = [sys.executable, "-m", "provisioning", "token", "create", "--device", "gw-op-7"]
    shared = tmp_path / "shared.token"
    with shared.open("w") as out:
        os.chmod(shared, 0o644)
        r = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "standard output is a file readable by others (mode 0644)" in r.stderr
    assert shared.read_text() == ""
    devices = receiver.admin("GET", "/v1/admin/devices")["devices"]
    assert "gw-op-7" not in [d["device_id"] for d in devices]  # refused before a token was issued
    private = tmp_path / "private.token"
    with private.open("w") as out:
        os.chmod(private, 0o600)
        r = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert private.read_text().startswith("tle1.")


def test_wrong_admin_token_never_shows(tmp_path, receiver, ctl):
    wrong = "wrong-admin-token-0123456789abcdef"
    r = ctl("devices", "list", env={"TIERLESS_ADMIN_TOKEN_FILE": "", "TIERLESS_ADMIN_TOKEN": wrong})
    assert r.code == 10
    assert "admin token was refused" in r.err
    assert wrong not in r.text
    secret_file = tmp_path / "admin"
    secret_file.write_text(wrong)
    secret_file.chmod(0o600)
    r = ctl("devices", "list", "--admin-token-file", secret_file)
    assert r.code == 10
    assert wrong not in r.text
    # the right token never shows either, in any command's output
    right = receiver.admin_token
    for argv in (("devices", "list"), ("token", "create", "--device", "gw-op-6")):
        assert right not in ctl(*argv).text


def test_admin_token_file_must_be_private(tmp_path, receiver, ctl):
    loose = tmp_path / "admin"
    loose.write_text(receiver.admin_token)
    loose.chmod(0o644)
    r = ctl("devices", "list", "--admin-token-file", loose)
    assert r.code == 3
    assert f"chmod 600 '{loose}'" in r.err
    assert receiver.admin_token not in r.text


def test_no_admin_token_and_no_url():
    bare = Edgectl({})
    r = bare("devices", "list", "--cloud", "http://127.0.0.1:9")
    assert r.code == 3
    assert "no admin token" in r.err
    r = bare("devices", "list", env={"TIERLESS_ADMIN_TOKEN": "x" * 20})
    assert r.code == 3
    assert "no receiver URL" in r.err


def test_the_admin_token_is_not_a_flag(ctl, capsys):
    secret = "s3cret-admin-token-value"
    for argv in (("--admin-token", secret), (f"--admin-token={secret}",), ("--admin-tok", secret)):
        with pytest.raises(SystemExit) as exc:
            ctl("devices", "list", *argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert secret not in err, err
    with pytest.raises(SystemExit):
        ctl("devices", "list", "--admin-token", secret)
    assert "not accepted" in capsys.readouterr().err


def test_help_lists_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        Edgectl({})("--help")
    text = capsys.readouterr().out
    for code in range(14):
        assert f"\n  {code:>3}  " in text, code
    commands = ("token", "devices", "keys", "fleet", "enroll", "rotate-key", "doctor", "opcua")
    for command in commands:
        assert command in text


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("60", 60)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "-1h", "1w", "h"])
def test_bad_durations(text):
    with pytest.raises(LocalError):
        parse_duration(text)
