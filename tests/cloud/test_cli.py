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

from agent.config import CloudConfig
from cloud.cli import _parser, main, serve_settings
from cloud.config import ConnectionLimits
from cloud.errors import SchemaError
from cloud.server import check_schema
from cloud.storage.migrations import latest_version
from cloud.storage.sqlite import SqliteStore
from tests.cloud.helpers import Gateway, free_port, spawn_receiver

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 32


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
    again, notices = _settings(["--db", f"sqlite:///{tmp_path}/c.db"], {})
    assert (again.admin_token, notices) == (settings.admin_token, [])


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
    }
    s, notices = _settings([], env)
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
    applied = list(range(1, latest + 1))
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
