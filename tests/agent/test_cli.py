"""`edge-agent`: exit codes, one-line errors, status, and SIGTERM on a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from tests.agent.helpers import open_test_buffer, write_config, write_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "agent.toml"


def test_check_config_ok(tmp_path, capsys):
    write_key(tmp_path / "keys" / "device.key")
    path = write_config(tmp_path, url="http://127.0.0.1:9")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


def test_check_config_reports_every_problem_one_line_each(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text('[device]\nid = ""\nkey_file = 3\n[cloud]\nurl = "x"\nspeed = 1\n')
    assert main(["check-config", str(path)]) == 3
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f'edge-agent: {path}: device.id: expected a string of length >= 1, got ""',
        f"edge-agent: {path}: device.key_file: expected a string, got 3",
        f"edge-agent: {path}: cloud.speed: unknown key",
        f"edge-agent: {path}: buffer: missing (required)",
    ]


def test_too_open_key_is_exit_3_with_the_openssh_line(tmp_path, capsys):
    key = tmp_path / "keys" / "device.key"
    write_key(key)
    key.chmod(0o644)
    path = write_config(tmp_path, url="http://127.0.0.1:9")
    assert main(["check-config", str(path)]) == 3
    assert capsys.readouterr().err.strip() == (
        f"edge-agent: Permissions 0644 for '{key}' are too open; chmod 600 '{key}' "
        "(a key file must not be readable by group or others)"
    )
    assert main(["run", "--config", str(path)]) == 3


def test_example_config_is_valid(tmp_path, capsys):
    from agent.config import load_config

    config = load_config(EXAMPLE)  # as shipped
    # No live source: a copied example must not upload invented readings (issue 14).
    assert config.sources == []
    assert config.cloud.url.startswith("https://")
    # and copied as it is into a directory beside its key (what edgectl enroll writes, with
    # paths relative to the file), check-config passes it as a whole
    (tmp_path / "agent.toml").write_text(EXAMPLE.read_text())
    write_key(tmp_path / "device.key")
    assert main(["check-config", str(tmp_path / "agent.toml")]) == 0


def test_status_without_buffer_is_exit_4(tmp_path, capsys):
    write_key(tmp_path / "keys" / "device.key")
    path = write_config(tmp_path, url="http://127.0.0.1:9")
    assert main(["status", "--config", str(path)]) == 4
    assert "no buffer file" in capsys.readouterr().err


def test_usage_errors_are_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2


def test_sigterm_flushes_and_exits_0_and_status_tells(tmp_path):
    """A real process: the receiver is unreachable, readings pile up; SIGTERM must still exit 0
    promptly with everything handed over committed."""
    write_key(tmp_path / "keys" / "device.key")
    path = write_config(
        tmp_path,
        url="http://127.0.0.1:9",  # discard port: connection refused
        sources='[[sources]]\ntype = "test"\nrate_hz = 100\nseries = 2\n',
        # no flush by the timer before the SIGTERM, however slow the machine: every reading the
        # buffer holds afterwards was flushed by the stop
        buffer={"flush_interval_ms": 60_000},
    )
    with subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 10  # start-up time varies with the machine's load
        while not (tmp_path / "data" / "buffer.db").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        finally:
            proc.kill()
        elapsed = time.monotonic() - started
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, err
    assert elapsed < 3.0
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "--config", str(path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = json.loads(out)
    assert status["agent_running"] is False
    # 1.5 s at up to 200 readings/s, all flushed on stop (a loaded machine makes fewer)
    assert status["buffer"]["readings"] >= 20
    assert status["buffer"]["readings"] == status["readings_committed"]
    assert status["uplink"]["state"] == "retrying"
    assert "ConnectError" in status["uplink"]["last_error"]
    text = subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(r"^uplink: +retrying$", text, re.M)
    assert re.search(r"^last sync: +never$", text, re.M)


def test_check_config_reports_serial_problems_with_file_key_and_reason(tmp_path, capsys):
    write_key(tmp_path / "keys" / "device.key")
    sources = (
        '[[sources]]\ntype = "modbus"\nname = "bus"\nport = { path = "/dev/ttyUSB0" }\n'
        '[[sources.devices]]\nname = "m"\nunit_id = 1\n'
        'points = [{ metric = "v", address = 0, type = "float16" }]\n\n'
        '[[sources]]\ntype = "ascii"\nname = "scale"\nport = { path = "/dev/ttyUSB1" }\n'
        'command = "SI"\npattern = "(?P<w>[0-9]+"\nvalues = [{ group = "w", metric = "w" }]\n\n'
        '[[sources]]\ntype = "mcu"\nname = "node"\n'
    )
    path = write_config(tmp_path, url="http://127.0.0.1:9", sources=sources)
    assert main(["check-config", str(path)]) == 3
    assert capsys.readouterr().err.splitlines() == [
        f'edge-agent: {path}: sources[0].devices[0].points[0].type: expected one of "u16", '
        '"i16", "u32", "i32", "float32", "float64", got "float16"',
        f"edge-agent: {path}: sources[2].port: missing (required)",
        f"edge-agent: {path}: sources[1].pattern: not a valid regular expression: missing ), "
        "unterminated subpattern at position 0",
    ]


def test_example_serial_sources_are_valid_once_uncommented(tmp_path):
    from agent.config import (
        AsciiSourceConfig,
        McuSourceConfig,
        ModbusSourceConfig,
        parse_config,
    )
    from agent.sources.opcua.config import OpcuaSourceConfig

    # "#key = ..." lines are the commented-out TOML; "# text" lines stay comments
    text = re.sub(r"^#(?=[^ \-\n]|$)", "", EXAMPLE.read_text(), flags=re.M)
    config = parse_config(text, name="agent.toml", base_dir=tmp_path)
    kinds = [type(s) for s in config.sources[1:]]
    ascii_ = AsciiSourceConfig
    assert kinds == [ModbusSourceConfig, ascii_, ascii_, ascii_, McuSourceConfig, OpcuaSourceConfig]
    plc = config.sources[-1]
    assert isinstance(plc, OpcuaSourceConfig)
    assert [n.metric for n in plc.nodes] == ["feed_flow", "reactor_temp"]
    weighbridge = config.sources[3]
    assert isinstance(weighbridge, AsciiSourceConfig)
    assert weighbridge.event is not None
    scale = config.sources[4]
    assert isinstance(scale, AsciiSourceConfig)
    assert scale.ticket is not None


def _stopped_agent_buffer(tmp_path, clock: str) -> Path:
    """A config whose buffer a (stopped) agent left behind, with a synced clock recorded."""
    write_key(tmp_path / "keys" / "device.key")
    path = write_config(tmp_path, url="http://127.0.0.1:9", clock=clock)
    buf = open_test_buffer(tmp_path / "data" / "buffer.db")
    buf.commit([], rejected_before={"control_characters": 2})
    buf.set_meta(clock_state=0, clock_offset_ms=0)
    buf.close()
    return path


@pytest.mark.parametrize(
    ("clock", "shown"),
    [
        ('sync_check = "assume_synced"\n', 'assumed synced (sync_check = "assume_synced"'),
        ('sync_check = "auto"\n', "synced (NTP)"),
    ],
)
def test_status_reports_the_clock_as_configured(tmp_path, capsys, clock, shown):
    path = _stopped_agent_buffer(tmp_path, clock)
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("clock:")]
    assert shown in line
    assert ("NTP" in line) == ("auto" in clock)  # before: "synced (NTP)" whatever the config
    assert re.search(r"^rejected: +2 total \(control_characters 2\), 2 not yet", out, re.M)


def test_status_into_a_closed_pipe_prints_no_traceback(tmp_path):
    path = _stopped_agent_buffer(tmp_path, 'sync_check = "assume_synced"\n')
    with subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "status", "--config", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        proc.stdout.close()  # `| head -0`: the reader is gone before the first line
        err = proc.stderr.read() if proc.stderr else ""
        code = proc.wait(timeout=30)
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert code == 0


def test_global_options_before_or_after_the_subcommand_and_a_default_config(tmp_path, capsys):
    from agent.cli import DEFAULT_CONFIG, _parser

    parser = _parser()
    for argv in (
        ["--config", "a.toml", "--log-level", "debug", "--log-format", "json", "run"],
        ["run", "--config", "a.toml", "--log-level", "debug", "--log-format", "json"],
        ["--log-level", "debug", "status", "--config", "a.toml", "--log-format", "json"],
    ):
        args = parser.parse_args(argv)
        assert (args.config, args.log_level, args.log_format) == ("a.toml", "debug", "json")
    assert parser.parse_args(["run"]).config == DEFAULT_CONFIG == "/var/lib/edge-agent/agent.toml"
    assert parser.parse_args(["--log-level", "error", "run"]).log_level == "error"
    # check-config takes the file as its argument or as --config, like every other subcommand
    write_key(tmp_path / "keys" / "device.key")
    path = write_config(tmp_path, url="http://127.0.0.1:9")
    assert main(["check-config", "--config", str(path)]) == 0
    assert main(["--config", str(path), "check-config"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{path}: ok"] * 2


def test_status_does_not_keep_showing_an_error_a_sync_or_a_new_key_answered(tmp_path, capsys):
    path = _stopped_agent_buffer(tmp_path, 'sync_check = "assume_synced"\n')
    key_ms = (tmp_path / "keys" / "device.key").stat().st_mtime_ns // 1_000_000

    def last_error(**meta) -> str:
        buf = open_test_buffer(tmp_path / "data" / "buffer.db")
        buf.set_meta(**meta)
        buf.close()
        assert main(["status", "--config", str(path)]) == 0
        (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("last error")]
        return str(line.split(":", 1)[1].strip())

    forbidden = "403 forbidden: key revoked or expired, or device disabled"
    # refused after the key was written: that is the state
    assert last_error(last_error=forbidden, last_error_ms=key_ms + 60_000) == forbidden
    # then re-enrolled: a new key file, written after the refusal
    (tmp_path / "keys" / "device.key").unlink()
    write_key(tmp_path / "keys" / "device.key")
    os.utime(tmp_path / "keys" / "device.key", ns=((key_ms + 120_000) * 10**6,) * 2)
    assert last_error().startswith(f"{forbidden} (the key file was replaced since")
    # and a sync succeeded after it: the 403 is history
    shown = last_error(last_sync_ms=key_ms + 180_000)
    assert shown == f"none since the last sync (before it: {forbidden})"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_agents_log_is_one_format_with_timestamps(tmp_path, fmt):
    """A real agent from start to SIGTERM, through an outage: every stderr line one JSON object
    with a UTC time, or one text line starting with that time (issue 14)."""
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    write_key(tmp_path / "keys" / "device.key")
    path = write_config(tmp_path, url="http://127.0.0.1:9")  # discard port: refused
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(path), "--log-format", fmt],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        try:
            # No deadline of its own: start-up time varies with the machine's load, and the
            # suite's per-test timeout ends a hang.
            while not any("uplink down" in line for line in lines):
                line = proc.stderr.readline()
                assert line, lines  # the agent ended before the outage was logged
                lines.append(line.rstrip("\n"))
        finally:
            proc.send_signal(signal.SIGTERM)
            rest = proc.communicate(timeout=20)[1]
    assert proc.returncode == 0, lines
    lines += [line for line in rest.splitlines() if line]
    assert any(line.endswith("stopped") or '"msg": "stopped"' in line for line in lines), lines
    for line in lines:
        if fmt == "json":
            body = json.loads(line)
            assert stamp.match(body["ts"]), line
            assert body["prog"] == "edge-agent", line
            assert body["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, line
        else:
            assert stamp.match(line.split(" ", 1)[0]), line
            assert line.split(" ")[1] == "edge-agent", line
