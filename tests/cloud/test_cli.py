"""`edge-cloud`: flags and environment, token files, schema policy, and the real process."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import CloudConfig
from cloud.cli import _parser, main, serve_settings
from cloud.config import ConnectionLimits
from cloud.errors import ConfigError, SchemaError
from cloud.receiver.configkey import public_config_key
from cloud.server import check_schema
from cloud.storage.migrations import latest_version, migrations
from cloud.storage.sqlite import SqliteStore
from tests.cloud.helpers import Gateway, free_port, spawn_receiver
from wire.keys import private_key_to_pem

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 32


@pytest.fixture(autouse=True)
def _in_a_directory_of_its_own(tmp_path, monkeypatch):
    """Parsing settings creates what a receiver keeps beside its default database (the
    config-signing key, in the working directory): in the test's directory, not the checkout."""
    monkeypatch.chdir(tmp_path)


def _settings(argv: list[str], env: dict[str, str]):
    return serve_settings(_parser().parse_args(["serve", *argv]), env)


def _secret(path: Path, value: str = TOKEN, mode: int = 0o600) -> Path:
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


def test_defaults_create_tokens_beside_the_database(tmp_path: Path) -> None:
    settings, notices = _settings(["--db", f"sqlite:///{tmp_path}/c.db"], {})
    assert (settings.host, settings.port, settings.public_url) == (
        "127.0.0.1",
        8080,
        "http://127.0.0.1:8080",
    )
    for what in ("admin", "read"):
        path = tmp_path / f"tierless-{what}.token"
        assert path.stat().st_mode & 0o777 == 0o600
        assert any(str(path) in n for n in notices)
    assert all(settings.admin_token not in n for n in notices)  # the path, never the value
    assert settings.admin_token == (tmp_path / "tierless-admin.token").read_text().strip()
    # the config-signing key likewise: created once, 0600, the same key on the next start
    key_file = tmp_path / "tierless-config-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert any(str(key_file) in n for n in notices)
    again, notices = _settings(["--db", f"sqlite:///{tmp_path}/c.db"], {})
    assert (again.admin_token, notices) == (settings.admin_token, [])
    assert settings.config_key is not None
    assert again.config_key is not None
    assert public_config_key(again.config_key) == public_config_key(settings.config_key)
    key_file.chmod(0o644)  # readable by others: refused, like a token file
    with pytest.raises(ConfigError, match="config-signing key file"):
        _settings(["--db", f"sqlite:///{tmp_path}/c.db"], {})


def test_environment_configures_everything_and_flags_win(tmp_path: Path) -> None:
    env = {
        "TIERLESS_DB": "postgresql://db.internal/tierless",
        "TIERLESS_HOST": "0.0.0.0",
        "TIERLESS_PORT": "9000",
        "TIERLESS_PUBLIC_URL": "https://ingest.example.com/",
        "TIERLESS_ALLOW_INSECURE_HTTP": "1",
        "TIERLESS_ADMIN_TOKEN_FILE": str(_secret(tmp_path / "admin")),
        "TIERLESS_READ_TOKEN": "r" * 20,
        "TIERLESS_DEVICE_RATE": "2.5",
        "TIERLESS_DEVICE_BURST": "9",
        "TIERLESS_TOKEN_DIR": str(tmp_path),
        "TIERLESS_HEAD_TIMEOUT": "2.5",
        "TIERLESS_KEEP_ALIVE": "30",
        "TIERLESS_MAX_WAITING_PER_ADDRESS": "500",
        "TIERLESS_MAX_REQUESTS_PER_ADDRESS": "400",
        "TIERLESS_CONFIG_KEY_FILE": str(tmp_path / "signing.key"),
    }
    signing = Ed25519PrivateKey.generate()
    (tmp_path / "signing.key").write_bytes(private_key_to_pem(signing))
    (tmp_path / "signing.key").chmod(0o600)
    s, notices = _settings([], env)
    assert s.config_key is not None
    assert public_config_key(s.config_key) == public_config_key(signing)
    assert (s.db_url, s.host, s.port, s.public_url) == (
        "postgresql://db.internal/tierless",
        "0.0.0.0",
        9000,
        "https://ingest.example.com",
    )
    assert (s.admin_token, s.read_token, notices) == (TOKEN, "r" * 20, [])
    assert (s.limits.device_rate_per_s, s.limits.device_burst) == (2.5, 9)
    connections = s.connections
    assert (
        connections.head_timeout_s,
        connections.keep_alive_s,
        connections.max_waiting_per_address,
        connections.max_requests_per_address,
    ) == (2.5, 30, 500, 400)
    s, _ = _settings(["--port", "9100", "--public-url", "https://other.example.com"], env)
    assert (s.port, s.public_url) == (9100, "https://other.example.com")
    s, _ = _settings(["--head-timeout", "1", "--keep-alive", "9"], env)
    assert (s.connections.head_timeout_s, s.connections.keep_alive_s) == (1.0, 9)


def test_connection_defaults() -> None:
    s, _ = _settings([], {"TIERLESS_ADMIN_TOKEN": TOKEN, "TIERLESS_READ_TOKEN": TOKEN})
    assert s.connections == ConnectionLimits()
    assert (s.connections.head_timeout_s, s.connections.max_head_bytes) == (5.0, 16 * 1024)
    # longer than the agent's default batch interval, so an upload connection is reused
    interval = next(
        f.default for f in msgspec.structs.fields(CloudConfig) if f.name == "batch_interval_ms"
    )
    assert s.connections.keep_alive_s * 1000 >= 2 * interval


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--host", "0.0.0.0", "--public-url", "https://x"], {}, "refusing plain HTTP"),
        (["--host", "0.0.0.0", "--allow-insecure-http"], {}, "--public-url is required"),
        (["--port", "70000"], {}, "not in 1..65535"),
        (["--port", "x"], {}, "invalid int value"),
        (["--tls-cert", "/nonexistent"], {}, "go together"),
        (["--public-url", "ftp://x"], {}, "public URL"),
        (["--db", "mysql://x"], {}, "expected sqlite"),
        ([], {"TIERLESS_ADMIN_TOKEN": "short"}, "at least 16"),
        ([], {"TIERLESS_ADMIN_TOKEN_FILE": "/nonexistent/token"}, "does not exist"),
        ([], {"TIERLESS_DEVICE_BURST": "many"}, "must be an integer"),
        (["--head-timeout", "0"], {}, "head_timeout_s must be positive"),
        ([], {"TIERLESS_MAX_WAITING_PER_ADDRESS": "-1"}, "must be positive"),
        (["--workers", "2"], {}, "--workers 2 needs PostgreSQL"),
        ([], {"TIERLESS_WORKERS": "0"}, "--workers must be in 1..64"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    full_env = {
        "TIERLESS_DB": f"sqlite:///{tmp_path}/c.db",
        "TIERLESS_TOKEN_DIR": str(tmp_path),
        **env,
    }
    if "invalid int" in message:  # argparse's own usage error: exit 2, usage + one line
        with pytest.raises(SystemExit, match="2"):
            main(["serve", *argv], full_env)
    else:
        assert main(["serve", *argv], full_env) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1].startswith(("edge-cloud: error:", "edge-cloud serve: error:"))
    )
    errors = [line for line in err.splitlines() if ": error:" in line]
    assert len(errors) == 1


def test_token_file_must_be_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loose = _secret(tmp_path / "admin", mode=0o640)
    code = main(
        ["serve", "--db", f"sqlite:///{tmp_path}/c.db", "--admin-token-file", str(loose)], {}
    )
    assert code == 2
    assert "Permissions 0640" in capsys.readouterr().err
    link = tmp_path / "link"
    link.symlink_to(_secret(tmp_path / "real"))
    assert (
        main(["serve", "--db", f"sqlite:///{tmp_path}/c.db", "--admin-token-file", str(link)], {})
        == 2
    )


async def test_schema_policy(tmp_path: Path) -> None:
    messages: list[str] = []
    fresh = SqliteStore(str(tmp_path / "fresh.db"))
    await fresh.open()
    await check_schema(fresh, "sqlite:///fresh.db", say=messages.append)
    assert await fresh.schema_version() == latest_version("sqlite")
    assert "schema created" in messages[0]
    await fresh.close()

    behind = tmp_path / "behind.db"
    with sqlite3.connect(behind) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ms INTEGER)"
        )
    conn.close()
    ahead = tmp_path / "ahead.db"
    with sqlite3.connect(ahead) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ms INTEGER)"
        )
        conn.execute("INSERT INTO schema_version VALUES (999, 0)")
    conn.close()
    for path, expected in ((behind, "run `edge-cloud migrate"), (ahead, "newer than")):
        store = SqliteStore(str(path))
        await store.open()
        with pytest.raises(SchemaError, match=re.escape(expected)):
            await check_schema(store, f"sqlite:///{path}", say=messages.append)
        await store.close()


def test_migrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/m.db"
    assert main(["migrate", "--db", db], {}) == 0
    latest = latest_version("sqlite")
    # every file, in order (numbers are assigned per branch, so they need not be contiguous)
    applied = [m.version for m in migrations("sqlite")]
    assert applied == sorted(applied)
    assert applied[-1] == latest
    assert f"schema at version {latest} (applied {applied})" in capsys.readouterr().err
    assert main(["migrate"], {"TIERLESS_DB": db}) == 0
    assert "nothing to apply" in capsys.readouterr().err


def _healthcheck_script() -> str:
    text = (ROOT / "Dockerfile").read_text()
    # The HEALTHCHECK's command: `CMD ["<python>", "-c", "<script>"]` on the line after it.
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("CMD [") and '"-c"' in ln)
    argv = json.loads(line.strip().removeprefix("CMD "))
    assert argv[1] == "-c"
    return str(argv[2])


async def test_container_entry_point_env_and_healthcheck(tmp_path: Path) -> None:
    """The Dockerfile's configuration, run as a process: env only, then its HEALTHCHECK."""
    port = free_port()
    env = {
        "TIERLESS_DB": f"sqlite:///{tmp_path}/data.db",
        "TIERLESS_HOST": "127.0.0.1",
        "TIERLESS_PORT": str(port),
        "TIERLESS_TOKEN_DIR": str(tmp_path),
        "TIERLESS_PUBLIC_URL": "https://ingest.example.com",
        "TIERLESS_LOG_LEVEL": "warning",
    }
    async with spawn_receiver(["serve"], env):
        admin = (tmp_path / "tierless-admin.token").read_text().strip()
        probe = subprocess.run(  # noqa: ASYNC221 - a short child, like Docker runs it
            [sys.executable, "-c", _healthcheck_script()],
            env={**os.environ, "TIERLESS_PORT": str(port)},
            check=False,
            timeout=10,
        )
        assert probe.returncode == 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            r = await c.post(
                "/v1/admin/tokens",
                json={"device_id": "gw-1", "ttl_s": 60},
                headers={"authorization": f"Bearer {admin}"},
            )
            gw = Gateway("gw-1", base_url="https://ingest.example.com")
            headers, body = gw.enroll_request(r.json()["token"])
            assert (await c.post("/v1/enroll", content=body, headers=headers)).status_code == 201
            headers, body = gw.batch_request(gw.next_batch())
            ack = await c.post("/v1/batches", content=body, headers=headers)
            assert ack.json()["status"] == "stored"
            assert "server" not in ack.headers
    down = subprocess.run(  # noqa: ASYNC221
        [sys.executable, "-c", _healthcheck_script()],
        env={**os.environ, "TIERLESS_PORT": str(port)},
        check=False,
        capture_output=True,
        timeout=10,
    )
    assert down.returncode != 0


def test_a_busy_port_is_a_configuration_error_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"TIERLESS_DB": f"sqlite:///{tmp_path}/c.db", "TIERLESS_TOKEN_DIR": str(tmp_path)}
        assert main(["serve", "--port", str(port)], env) == 2
    assert f"cannot listen on 127.0.0.1:{port}: already in use" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no database, no token files


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_a_database_it_cannot_open_is_exit_1_and_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """docs/deploy-cloud.md: an unreachable or refused database exits with status 1."""
    import socket

    if kind == "postgres":
        with socket.socket() as closed:  # a port nothing listens on: connection refused
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        db, named = f"postgresql://tierless@127.0.0.1:{port}/tierless", f"port {port} failed"
    else:
        missing = tmp_path / "no-such-dir" / "c.db"
        db, named = f"sqlite:///{missing}", f"sqlite: {missing}: unable to open database file"
    env = {"TIERLESS_DB": db, "TIERLESS_TOKEN_DIR": str(tmp_path)}
    assert main(["serve", "--port", str(free_port())], env) == 1
    # Before it: the notices of the token files created on a first start (kept for the next).
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1, errors
    assert errors[0].startswith("edge-cloud: error: ")
    assert named in errors[0]


def test_dashboard_time_zone_and_viewer_token_from_flags_and_environment(tmp_path: Path) -> None:
    base = {"TIERLESS_DB": f"sqlite:///{tmp_path}/c.db", "TIERLESS_TOKEN_DIR": str(tmp_path)}
    s, _ = _settings([], base)
    assert (s.timezone, s.viewer_token) == ("UTC", "")  # no viewer token is ever created
    assert not list(tmp_path.glob("*viewer*"))
    env = {**base, "TIERLESS_TIMEZONE": "Europe/Berlin", "TIERLESS_VIEWER_TOKEN": "v" * 20}
    s, _ = _settings([], env)
    assert (s.timezone, s.viewer_token) == ("Europe/Berlin", "v" * 20)
    viewer = _secret(tmp_path / "viewer", "w" * 24)
    s, _ = _settings(["--timezone", "America/Chicago", "--viewer-token-file", str(viewer)], env)
    assert (s.timezone, s.viewer_token) == ("America/Chicago", "w" * 24)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--timezone", "Mars/Olympus"], {}, "time zone 'Mars/Olympus' is not an IANA zone"),
        ([], {"TIERLESS_VIEWER_TOKEN": "short"}, "viewer token variable: a token is at least"),
        ([], {"TIERLESS_VIEWER_TOKEN": TOKEN}, "viewer token must differ"),
        ([], {"TIERLESS_LOG_FORMAT": "xml"}, "log format 'xml' is not text or json"),
    ],
)
def test_dashboard_and_log_settings_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv, env, message
) -> None:
    full = {
        "TIERLESS_DB": f"sqlite:///{tmp_path}/c.db",
        "TIERLESS_TOKEN_DIR": str(tmp_path),
        "TIERLESS_READ_TOKEN": TOKEN,
        **env,
    }
    assert main(["serve", *argv], full) == 2
    assert message in capsys.readouterr().err


def test_log_options_before_or_after_the_subcommand() -> None:
    parser = _parser()
    for argv in (
        ["--log-level", "debug", "--log-format", "json", "serve"],
        ["serve", "--log-level", "debug", "--log-format", "json"],
        ["migrate", "--log-format", "json", "--log-level", "debug"],
    ):
        args = parser.parse_args(argv)
        assert (args.log_level, args.log_format) == ("debug", "json"), argv
    args = parser.parse_args(["--log-level", "error", "serve"])
    assert args.log_level == "error"  # the subcommand's default does not undo it


async def test_the_receivers_log_is_one_format_with_timestamps(tmp_path: Path) -> None:
    """uvicorn's lines and ours: every line one JSON object with a UTC time, or one text line
    starting with that time."""
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    for fmt in ("json", "text"):
        env = {
            "TIERLESS_DB": f"sqlite:///{tmp_path}/data.db",
            "TIERLESS_PORT": str(free_port()),
            "TIERLESS_TOKEN_DIR": str(tmp_path),
        }
        lines = await _receiver_log(env, fmt)
        assert any("listening on" in line for line in lines), lines
        assert any("uvicorn" in line for line in lines), lines  # uvicorn's own, reformatted
        for line in lines:
            if fmt == "json":
                body = json.loads(line)
                assert stamp.match(body["ts"]), line
                assert body["prog"] == "edge-cloud"
            else:
                assert stamp.match(line.split(" ", 1)[0]), line
                assert line.split(" ")[1] == "edge-cloud", line


async def _receiver_log(env: dict[str, str], fmt: str) -> list[str]:
    """The receiver's stderr lines from start until it stopped on SIGTERM."""
    import asyncio
    import signal

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud",
        "serve",
        "--log-format",
        fmt,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any("listening on" in line for line in lines):
                line = (await proc.stderr.readline()).decode()
                assert line, lines
                lines.append(line.rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = await proc.communicate()
    return lines + [line for line in rest.decode().splitlines() if line]


async def test_a_viewer_token_opens_the_dashboard_and_nothing_else(tmp_path: Path) -> None:
    port = free_port()
    viewer = "v" * 24
    env = {
        "TIERLESS_DB": f"sqlite:///{tmp_path}/data.db",
        "TIERLESS_PORT": str(port),
        "TIERLESS_TOKEN_DIR": str(tmp_path),
        "TIERLESS_VIEWER_TOKEN": viewer,
        "TIERLESS_TIMEZONE": "Europe/Berlin",
    }
    async with (
        spawn_receiver(["serve"], env),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c,
    ):
        bearer = {"authorization": f"Bearer {viewer}"}
        page = await c.get("/", headers=bearer)
        assert page.status_code == 200
        assert "Europe/Berlin" in page.text
        assert (await c.get("/v1/series", headers=bearer)).status_code == 401


def test_the_alert_interval_and_smtp_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    parse = _parser().parse_args
    settings, _ = serve_settings(parse(["serve", "--db", db]), {})
    assert (settings.alerts_interval_s, settings.smtp) == (300.0, None)
    env = {
        "TIERLESS_ALERTS_INTERVAL_S": "0",
        "TIERLESS_SMTP_HOST": "mail",
        "TIERLESS_SMTP_PORT": "2525",
    }
    settings, _ = serve_settings(parse(["serve", "--db", db]), env)
    assert settings.alerts_interval_s == 0
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.port) == ("mail", 2525)
    settings, _ = serve_settings(parse(["serve", "--db", db, "--alerts-interval-s", "30"]), env)
    assert settings.alerts_interval_s == 30
    for argv, env, reason in (
        (["--alerts-interval-s", "-1"], {}, "alerts interval -1 s is not in 0..86400"),
        ([], {"TIERLESS_ALERTS_INTERVAL_S": "often"}, "alerts interval must be a number"),
        ([], {"TIERLESS_SMTP_HOST": "m", "TIERLESS_SMTP_PORT": "x"}, "TIERLESS_SMTP_PORT must be"),
    ):
        assert main(["serve", "--db", db, *argv], env=env) == 2
        err = capsys.readouterr().err
        assert reason in err
        assert "Traceback" not in err
