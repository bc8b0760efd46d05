"""The alert scheduler inside real `edge-cloud serve` processes, emailing a real SMTP server
(aiosmtpd): a planted finding (a gateway gone silent) becomes exactly one email, across a kill -9
of the receiver before the email could be sent, and with two receivers on one PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from cloud.storage.sqlite import SqliteStore
from cloud.storage.store import Store
from tests.cloud.apps.test_alerts import smtp_server
from tests.cloud.apps.test_figures import freeze, series_data
from tests.cloud.helpers import Gateway, free_port, register
from wire.models import SeriesKey

pytestmark = pytest.mark.e2e
MIN = 60_000
HOUR = 60 * MIN
RULE = '{"id": "quiet", "kinds": ["silent"], "emails": ["ops@example.org"]}'


async def plant_silence(store: Store) -> None:
    """A gateway that read every 5 minutes from 30 hours ago until 10 hours ago, then went
    silent, and a rule that emails on silence."""
    now = int(time.time() * 1000)
    gw = Gateway("gw-quiet")
    await register(store, gw)
    key = SeriesKey("hall_temperature", "Cel", "plant", "hall", "", "air")
    rows = [(t, 20.0 + (t // MIN) % 3) for t in range(now - 30 * HOUR, now - 10 * HOUR, 5 * MIN)]
    frozen = freeze(gw, [series_data(key, rows)])
    await store.store_batch(gw.meta(frozen, received_ms=now), frozen.batch)
    await store.put_rule("quiet", RULE, now)


class Serve:
    """`edge-cloud serve` as a child process whose log lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read(), name="serve-log")

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace"))
            self.changed.set()
        self.changed.set()

    def passes(self) -> list[str]:
        return [x for x in self.lines if "alerts: " in x and " findings, " in x]

    async def wait_until(self, done: Callable[[], bool], *, timeout_s: float = 60.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                if self.reader.done():
                    raise AssertionError("receiver exited:\n" + "".join(self.lines))
                self.changed.clear()
                await self.changed.wait()

    async def wait_for(self, text: str) -> None:
        await self.wait_until(lambda: any(text in x for x in self.lines))

    async def wait_passes(self, n: int) -> None:
        await self.wait_until(lambda: len(self.passes()) >= n)


@contextlib.asynccontextmanager
async def serve(db: str, tmp: Path, smtp_port: int) -> AsyncIterator[Serve]:
    env = {
        **os.environ,
        "TIERLESS_SMTP_HOST": "127.0.0.1",
        "TIERLESS_SMTP_PORT": str(smtp_port),
        "TIERLESS_SMTP_FROM": "tierless@example.org",
    }
    args = ["--db", db, "--port", str(free_port()), "--token-dir", str(tmp)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud",
        "serve",
        *args,
        "--alerts-interval-s",
        "0.5",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    s = Serve(proc)
    try:
        await s.wait_for("listening on ")
        yield s
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(20):
            await proc.wait()
            await s.reader


@contextlib.asynccontextmanager
async def slow_smtp_server() -> AsyncIterator[tuple[int, list[email.message.Message]]]:
    """An SMTP server that takes 3 s to accept a message: a second receiver's pass starts while
    the first one's email is still being sent, so only the claim keeps it from sending again."""
    got: list[email.message.Message] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            await asyncio.sleep(3)
            got.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, got
    finally:
        controller.stop()


async def test_a_silence_is_one_email_across_a_kill_and_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "cloud.db"))
    await store.open()
    try:
        await store.migrate()
        await plant_silence(store)
    finally:
        await store.close()
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    async with smtp_server() as (port, got):
        # The first receiver opens the alert but the mail server refuses it (nothing listens on
        # the port it was given); it is killed before the retry.
        async with serve(db, tmp_path, free_port()) as first:
            await first.wait_for("1 findings, 1 alerts opened, 0 delivered, 1 failed")
            first.proc.send_signal(signal.SIGKILL)
            assert await first.proc.wait() == -signal.SIGKILL
        assert got == []
        # The next one finds the alert open (no second one) and its email due after the
        # backoff (10 s): sent once, then never again.
        async with serve(db, tmp_path, port) as second:
            await second.wait_for("1 delivered")
            n = len(second.passes())
            await second.wait_passes(n + 4)
        assert second.proc.returncode in (0, -signal.SIGTERM), "".join(second.lines)
        passes = second.passes()
        assert all(" 0 alerts opened" in x for x in passes), passes
        assert sum(" 1 delivered" in x for x in passes) == 1, passes
    (msg,) = got
    assert msg["To"] == "ops@example.org"
    assert msg["Subject"] == "[tierless] silent: gw-quiet"


@pytest.mark.postgres
async def test_two_receivers_on_one_postgres_send_one_email(tmp_path: Path, pg_dsn: str) -> None:
    from cloud.storage.postgres import PostgresStore

    store = PostgresStore(pg_dsn, pool_size=2)
    await store.open()
    try:
        await store.migrate()
        await plant_silence(store)
    finally:
        await store.close()
    async with (
        slow_smtp_server() as (port, got),
        serve(pg_dsn, tmp_path, port) as a,
        serve(pg_dsn, tmp_path, port) as b,
    ):
        await a.wait_passes(4)
        await b.wait_passes(4)
    delivered = [x for x in a.passes() + b.passes() if " 1 delivered" in x]
    assert len(delivered) == 1
    assert len(got) == 1
    assert got[0]["Subject"] == "[tierless] silent: gw-quiet"
