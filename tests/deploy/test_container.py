"""The receiver's container, built and run for real with the commands of docs/deploy-cloud.md.

The page's shell blocks marked `<!-- container-test: NAME -->` are read from it and run here as
written, with the page's variables set to this test's own names (image, container, volume,
database, role, a free port, a temporary secrets directory and gateway directory), against the
real PostgreSQL of TIERLESS_PG_DSN and the image's base BASE_IMAGE (default
tierless-base:bookworm, made by deploy/container/base-image.sh; `make container-test` makes it).
Around them the test checks what the page promises: the health check turns healthy, the
receiver runs as uid 10001 on a read-only root file system, a gateway enrolled with edgectl on
the host gets a batch of readings stored in PostgreSQL, and `docker stop` ends it with status 0.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import PG_DSN
from tests.deploy.conftest import ROOT

DOC = ROOT / "docs" / "deploy-cloud.md"
BLOCK = re.compile(r"<!-- container-test: (\w+) -->\n```sh\n(.*?)```", re.S)
HEALTHY_WITHIN_S = 180.0  # interval 10 s, start period 20 s; generous for a loaded machine
INGEST_WITHIN_S = 120.0


def doc_blocks() -> dict[str, str]:
    return dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))


def test_the_doc_has_every_step():
    assert list(doc_blocks()) == ["build", "secrets", "run", "health", "enrol", "stop"]


def test_every_variable_of_the_steps_is_listed_and_set_by_the_test():
    text = DOC.read_text(encoding="utf-8")
    block = text[text.index("The variables, with what") :]
    block = block[block.index("```sh") : block.index("```", block.index("```sh") + 5)]
    listed = set(re.findall(r"(?:^|\s)([A-Z_]+)=", block))
    used = {name for body in doc_blocks().values() for name in re.findall(r"\$\{?([A-Z_]+)", body)}
    assert used <= listed, used - listed
    assert listed == set(TEST_VARIABLES)


@pytest.mark.parametrize("name", sorted(doc_blocks()))
def test_each_step_is_valid_shell(name):
    done = _run(["bash", "-n", "-c", doc_blocks()[name]])
    assert done.returncode == 0, done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(
    args: list[str], *, timeout: float = 120, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]  # kw passes through
        args, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


class Page:
    """Runs the page's blocks with this test's values for the page's variables."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.blocks = doc_blocks()

    def run(self, name: str, *, timeout: float = 120) -> str:
        done = _run(
            ["bash", "-euo", "pipefail", "-c", self.blocks[name]],
            timeout=timeout,
            cwd=ROOT,
            env=self.env,
        )
        assert done.returncode == 0, f"block {name!r} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def _psql(sql: str, dsn_host: str, dsn_port: str, db: str = "postgres") -> str:
    done = _run(
        ["psql", "-h", dsn_host, "-p", dsn_port, "-U", "postgres", "-d", db, "-tAq"]
        + ["-v", "ON_ERROR_STOP=1", "-c", sql]
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


TEST_VARIABLES = (
    "IMAGE",
    "BASE_IMAGE",
    "NAME",
    "DATA_VOLUME",
    "SECRETS",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_ROLE",
    "PORT",
    "PUBLIC_URL",
    "DEVICE",
    "GATEWAY_DIR",
    "TOKEN_FILE",
)


@pytest.fixture
def page(tmp_path, deploy_tests) -> Iterator[Page]:
    for tool in ("docker", "psql"):
        assert shutil.which(tool), f"{tool} is not installed (.ci/run installs it)"
    pg = urlsplit(PG_DSN)
    tag = secrets.token_hex(4)
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "IMAGE": "tierless-cloud:container-test",
        "BASE_IMAGE": os.environ.get("BASE_IMAGE", "tierless-base:bookworm"),
        "NAME": f"tierless-ct-{tag}",
        "DATA_VOLUME": f"tierless-ct-{tag}",
        "SECRETS": str(tmp_path / "secrets"),
        "DB_HOST": pg.hostname or "127.0.0.1",
        "DB_PORT": str(pg.port or 5432),
        "DB_NAME": f"tierless_ct_{tag}",
        "DB_ROLE": f"tierless_ct_{tag}",
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DEVICE": f"gw-ct-{tag}",
        "GATEWAY_DIR": str(tmp_path / "edge-agent"),
        "TOKEN_FILE": str(tmp_path / "gw.token"),
    }
    assert set(TEST_VARIABLES) <= set(env)
    try:
        yield Page(env)
    finally:
        _run(["docker", "rm", "--force", "--volumes", env["NAME"]])
        _run(["docker", "volume", "rm", env["DATA_VOLUME"]])
        _run(
            ["psql", "-h", env["DB_HOST"], "-p", env["DB_PORT"], "-U", "postgres", "-q"]
            + ["-c", f"DROP DATABASE IF EXISTS {env['DB_NAME']}"]
            + ["-c", f"DROP ROLE IF EXISTS {env['DB_ROLE']}"]
        )


def _wait_healthy(page: Page) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    status = ""
    while time.monotonic() < deadline:
        status = page.run("health").splitlines()[0]
        if status == "healthy":
            return
        assert status in ("starting", ""), f"health {status!r}:\n{page.run('health')}"
        time.sleep(2)
    pytest.fail(f"not healthy after {HEALTHY_WITHIN_S} s ({status!r}):\n{page.run('health')}")


def _ingest_one_batch(page: Page) -> int:
    """Run the enrolled gateway's agent with a synthetic source until the receiver has stored
    readings in PostgreSQL; stop it with SIGTERM. The number of readings stored."""
    env = page.env
    config = Path(env["GATEWAY_DIR"]) / "agent.toml"
    with config.open("a", encoding="utf-8") as f:
        f.write(
            '\n[metrics]\nlisten = ""\n\n'
            '[[sources]]\ntype = "test"\nname = "bench"\nrate_hz = 10\nseries = 2\n'
        )
    agent = Path(sys.executable).parent / "edge-agent"
    with subprocess.Popen(
        [str(agent), "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + INGEST_WITHIN_S
            stored = 0
            while time.monotonic() < deadline and proc.poll() is None:
                stored = int(
                    _psql(
                        "SELECT count(*) FROM reading",
                        env["DB_HOST"],
                        env["DB_PORT"],
                        env["DB_NAME"],
                    )
                )
                if stored:
                    break
                time.sleep(1)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
    assert stored > 0, f"no readings stored within {INGEST_WITHIN_S} s; agent log:\n{err}"
    assert code == 0, err
    return stored


def test_the_container_as_documented(page):
    env = page.env
    page.run("build", timeout=1200)
    page.run("secrets")
    page.run("run")
    _wait_healthy(page)

    # not root, and a read-only root file system (the page's `docker run` asks for both)
    assert _run(["docker", "exec", env["NAME"], "id", "-u"]).stdout.strip() == "10001"
    status = _run(["docker", "exec", env["NAME"], "cat", "/proc/1/status"]).stdout
    assert re.search(r"^Uid:\s+10001\s+10001\s+10001\s+10001$", status, re.M), status
    inspect = ["docker", "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", env["NAME"]]
    assert _run(inspect).stdout.strip() == "true"
    wrote = _run(["docker", "exec", env["NAME"], "touch", "/opt/tierless/written"])
    assert wrote.returncode != 0
    assert "Read-only file system" in wrote.stderr

    page.run("enrol")
    assert _ingest_one_batch(page) > 0

    stopped = page.run("stop", timeout=120).splitlines()
    assert stopped[-1] == "0", stopped
    logs = _run(["docker", "logs", env["NAME"]])
    assert "Traceback" not in logs.stdout + logs.stderr, logs.stderr
