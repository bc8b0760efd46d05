"""`edge-cloud serve --workers N`: N receiver processes on one port, sharing one PostgreSQL.

How: the supervisor (the process the operator started) checks the schema once, binds N listening
sockets to the same address with `SO_REUSEPORT`, and forks one worker per socket. Each worker is a
whole receiver (`cloud.server.serve` on its socket): its own event loop, store pool, connection
guard, limiters, key cache and metrics. The kernel spreads new connections over the N sockets by
a hash of the connection's addresses, so one keep-alive connection stays with one worker.

Why processes with SO_REUSEPORT rather than uvicorn's `workers=` (one shared socket):
- one accept queue per worker: an idle worker is never starved by a busy one that happens to win
  every wake-up on a shared socket, and the spread does not depend on who is awake;
- each worker keeps the connection guard of `cloud.receiver.http11` exactly as one receiver has
  it (uvicorn's multi-worker mode needs the app as an import string and re-reads settings from the
  environment; here the settings, tokens included, are inherited through `fork`, never put on a
  command line or in the environment);
- several `edge-cloud serve` on several machines behind a load balancer is the same picture, so
  one story covers both (docs/scaling.md).

What is per worker (documented in docs/scaling.md): the connection caps (`--limit-concurrency`,
per-address caps) and the per-device and per-address rate limits apply in each worker, so a
client could get up to N times them; `--pool-size` PostgreSQL connections per worker;
`/metrics` answers from whichever worker took the connection, with that worker's counters, and
says which (`tierless_worker_info{worker="k/N"}`). Exactly-once does not depend on any of this:
the store decides, under the device row's lock (`ingest_batch`).

SQLite refuses N > 1: the embedded store has one writer thread in one process and its in-process
caches (series ids, device heads) assume it is the only writer.

Lifecycle: SIGTERM or SIGINT to the supervisor is passed to every worker (uvicorn finishes the
requests in flight), the supervisor waits for them and exits 0. A worker that dies on its own
stops the others and the supervisor exits 1, so a service manager restarts the whole set. A
supervisor killed outright takes its workers with it (PR_SET_PDEATHSIG). Linux
only (fork and SO_REUSEPORT's balancing), like the rest of the receiver's deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from multiprocessing.connection import wait
from types import FrameType

from cloud.errors import ConfigError
from cloud.server import ServeSettings, check_schema_once, serve

log = logging.getLogger("cloud.workers")
MAX_WORKERS = 64
STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def check_workers(workers: int, db_url: str) -> int:
    """`workers` if this store can run that many; ConfigError otherwise."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError([f"--workers must be in 1..{MAX_WORKERS}, not {workers}"])
    if workers > 1 and not db_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            [
                f"--workers {workers} needs PostgreSQL: the SQLite store has one writer in one "
                "process; run one worker, or use --db postgresql://…"
            ]
        )
    return workers


def bind_shared(host: str, port: int, count: int, *, backlog: int = 2048) -> list[socket.socket]:
    """`count` listening sockets on `host:port`, all with SO_REUSEPORT (so they share the port and
    the kernel balances connections over them); ConfigError if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on an accepted connection
            # only when its socket says TCP, and without it Nagle holds a response's body
            # (written after its head) until the client's delayed ACK, ~40 ms a request.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigError([f"cannot listen on {host}:{port}: {why}"]) from exc
    return sockets


def _worker(
    settings: ServeSettings, sock: socket.socket, number: int, count: int, supervisor: int
) -> None:
    # A fresh process image from fork: the supervisor's signal handlers are not installed yet
    # (they are set after every fork), and uvicorn installs its own for SIGINT and SIGTERM.
    # If the supervisor is killed outright, the kernel sends this worker SIGTERM.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the line above
        return
    say = logging.getLogger("cloud.notice").info

    def tagged(message: str) -> None:
        say(f"worker {number}/{count} (pid {os.getpid()}): {message}")

    asyncio.run(serve(settings, say=tagged, sock=sock, worker=f"{number}/{count}"))


def run_workers(settings: ServeSettings, count: int, *, say: Callable[[str], None]) -> int:
    """Run `count` workers until SIGTERM/SIGINT (exit 0) or until one dies (exit 1)."""
    asyncio.run(check_schema_once(settings.db_url, say=say))
    sockets = bind_shared(settings.host, settings.port, count)
    ctx = multiprocessing.get_context("fork")
    procs = []
    for number, sock in enumerate(sockets, start=1):
        proc = ctx.Process(
            target=_worker,
            args=(settings, sock, number, count, os.getpid()),
            name=f"receiver-{number}",
        )
        proc.start()
        procs.append(proc)
    for sock in sockets:
        sock.close()  # the workers hold their own copies
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    crashed = False
    try:
        say(f"{count} workers on {settings.host}:{settings.port} (SO_REUSEPORT)")
        ready = wait([p.sentinel for p in procs])
        crashed = not stopping
        if crashed:
            # the sentinel fires when the worker's descriptors close: reap it for its code
            dead = next(p for p in procs if p.sentinel in ready)
            dead.join(STOP_TIMEOUT_S)
            log.error("%s exited (code %s); stopping the others", dead.name, dead.exitcode)
    finally:
        # whatever happened above, no worker outlives the supervisor
        stop(signal.SIGTERM, None)
        for p in procs:
            p.join(STOP_TIMEOUT_S)
            if p.exitcode is None:
                log.error("%s did not stop in %g s; killed", p.name, STOP_TIMEOUT_S)
                p.kill()
                p.join()
        for s, handler in old.items():
            signal.signal(s, handler)
    return 1 if crashed else 0
