"""Running the receiver: open the store, check its schema, serve the app with uvicorn.

This is the entry point's half that does I/O; `cloud.cli` turns flags and environment into
`ServeSettings`. Schema policy at start-up: a brand-new empty database (SQLite file or PostgreSQL
schema) is migrated automatically, so `edge-cloud serve` works with no setup; a database that
holds an older schema is refused until an operator runs `edge-cloud migrate` (an upgrade of real
data is a step someone should choose), and a newer schema is refused outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.app import create_app
from cloud.apps.alert_delivery import SmtpConfig
from cloud.apps.alert_scheduler import AlertScheduler
from cloud.apps.dashboard import DashboardConfig
from cloud.apps.intensity import PlantConfig
from cloud.bearer import BearerCheck
from cloud.config import Config, ConnectionLimits, Limits
from cloud.errors import ConfigError, SchemaError
from cloud.maintenance import maintenance_loop
from cloud.receiver.context import wall_clock_ms
from cloud.receiver.http11 import guarded_protocol
from cloud.storage.migrations import latest_version
from cloud.storage.retention import Retention
from cloud.storage.store import Store, describe_url, store_from_url
from hostio.logformat import LogFormat

log = logging.getLogger("cloud.server")
GC_YOUNG_THRESHOLD = 7_000  # allocations; CPython's default is 700


@dataclass(frozen=True, slots=True)
class ServeSettings:
    db_url: str
    host: str
    port: int
    public_url: str
    admin_token: str
    read_token: str
    tls_cert: str | None = None
    tls_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    limit_concurrency: int = 200  # requests being handled at once (not open connections)
    pool_size: int = 8
    log_level: str = "info"
    log_format: LogFormat = LogFormat.TEXT
    access_log: bool = False
    viewer_token: str = ""  # the dashboard's viewer token ("" for none)
    timezone: str = "UTC"  # the dashboard's day
    plant: PlantConfig | None = None  # the plant file's processes and shifts (None: defaults)
    alerts_interval_s: float = 300.0  # the alert scheduler's interval; 0: off
    smtp: SmtpConfig | None = None  # where alert emails go (None: they wait in the outbox)
    workers: int = 1  # receiver processes on the one port (`cloud.workers`)
    retention: Retention = field(default_factory=Retention)  # raw readings kept, per medium
    config_key: Ed25519PrivateKey | None = None  # signs pushed configs (receiver.configkey)


async def check_schema(store: Store, db_url: str, *, say: Callable[[str], None]) -> None:
    """Migrate an empty store; refuse one whose schema is not this receiver's."""
    want = latest_version(store.kind)
    have = await store.schema_version()
    if have == want:
        return
    if have == 0 and await store.empty():
        applied = await store.migrate()
        say(f"new database {describe_url(db_url)}: schema created (versions {applied})")
        return
    if have > want:
        raise SchemaError(
            f"database schema version {have} is newer than this receiver's ({want}); "
            "upgrade edge-cloud"
        )
    raise SchemaError(
        f"database schema is at version {have}, this receiver needs {want}: "
        f"run `edge-cloud migrate --db {describe_url(db_url)}` first"
    )


def tune_gc() -> None:
    """Make the cyclic GC cheap for a long-running server: everything built so far (modules, the
    app, the store) lives as long as the process, so move it out of the collector's sight
    (`gc.freeze`), and collect young objects ten times less often (a request allocates a few
    hundred containers that reference counting frees anyway). Measured on the small-batch bench:
    GC time ~8 us per request -> under 1 us, and no more ~10 ms full collections. Process-wide:
    only entry points call it."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


# Descriptors kept for what is neither a connection nor the database pool: the listening
# socket, the SQLite files, log files, the event loop's own.
FD_RESERVE = 64
UNLIMITED_DESCRIPTORS = 1 << 20  # what "unlimited" counts as


def raise_descriptor_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (every waiting connection is a
    descriptor); returns the soft limit now in force. Process-wide: only entry points call it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_DESCRIPTORS
    # Linux refuses an "unlimited" soft limit above fs.nr_open; a large finite one is enough.
    target = UNLIMITED_DESCRIPTORS if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def fit_connections(
    limits: ConnectionLimits, *, descriptors: int, max_requests: int, pool_size: int
) -> ConnectionLimits:
    """`limits` with `max_waiting` lowered, if need be, so that waiting connections, requests
    being handled and the database pool fit in `descriptors` open files."""
    budget = descriptors - FD_RESERVE - max_requests - pool_size
    if budget >= limits.max_waiting:
        return limits
    if budget < 1:
        raise ConfigError(
            [
                f"the open-file limit ({descriptors}) is too low for {max_requests} requests at "
                "once; raise it (ulimit -n, LimitNOFILE=) or lower --limit-concurrency"
            ]
        )
    return replace(limits, max_waiting=budget)


def http_options(connections: ConnectionLimits, *, max_requests: int) -> dict[str, Any]:
    """The `uvicorn.Config` options that put the connection guard in place."""
    return {
        # The guard counts requests being handled; uvicorn's own limit counts open connections,
        # so idle sockets could lock gateways out (docs/security.md, "Connections").
        "http": guarded_protocol(connections, max_requests=max_requests),
        "ws": "none",
        "limit_concurrency": None,
        "timeout_keep_alive": connections.keep_alive_s,
        "h11_max_incomplete_event_size": connections.max_head_bytes,
    }


class _Server(uvicorn.Server):
    """uvicorn's server that reports once it is listening (whatever the log level)."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_listening()


def tls_context_factory(
    config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    ctx = default()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def check_schema_once(db_url: str, *, say: Callable[[str], None]) -> None:
    """`check_schema` on a store opened for it alone (the supervisor of several workers)."""
    store = store_from_url(db_url, pool_size=1)
    await store.open()
    try:
        await check_schema(store, db_url, say=say)
    finally:
        await store.close()


async def serve(
    settings: ServeSettings,
    *,
    say: Callable[[str], None],
    sock: socket.socket | None = None,
    worker: str = "",
) -> None:
    """Serve until SIGTERM/SIGINT, on `settings.host:port`, or on `sock` (already listening:
    worker `worker`, "k/N", of `cloud.workers`)."""
    store = store_from_url(settings.db_url, pool_size=settings.pool_size)
    await store.open()
    try:
        await check_schema(store, settings.db_url, say=say)
        config = Config(
            settings.public_url,
            admin=BearerCheck(settings.admin_token),
            read=BearerCheck(settings.read_token),
            limits=settings.limits,
            config_key=settings.config_key,
        )
        plant = settings.plant or PlantConfig((), tz=settings.timezone)
        listening = (
            f"listening on {settings.host}:{settings.port}, signatures for {config.public_url}"
        )
        descriptors = raise_descriptor_limit()
        connections = fit_connections(
            settings.connections,
            descriptors=descriptors,
            max_requests=settings.limit_concurrency,
            pool_size=settings.pool_size,
        )
        say(
            f"connections: {settings.limit_concurrency} requests at once "
            f"({connections.max_requests_per_address} per address), "
            f"{connections.max_waiting} waiting ({connections.max_waiting_per_address} per "
            f"address), head {connections.max_head_bytes} bytes within "
            f"{connections.head_timeout_s:g} s, keep-alive {connections.keep_alive_s} s, "
            f"open-file limit {descriptors}"
        )
        server = _Server(
            uvicorn.Config(
                create_app(
                    config,
                    store,
                    dashboard_config=DashboardConfig(
                        viewer=BearerCheck(settings.viewer_token), timezone=settings.timezone
                    ),
                    plant=plant,
                    worker=worker,
                ),
                host=settings.host,
                port=settings.port,
                lifespan="off",
                proxy_headers=False,  # signatures are checked against public_url, never Host/XFF
                server_header=False,
                **http_options(connections, max_requests=settings.limit_concurrency),
                ssl_certfile=settings.tls_cert,
                ssl_keyfile=settings.tls_key,
                ssl_context_factory=tls_context_factory if settings.tls_cert else None,
                # uvicorn's loggers propagate to the root handler the entry point set up
                # (`hostio.logformat`), so its lines and ours share one format.
                log_config=None,
                log_level=settings.log_level,
                access_log=settings.access_log,
            ),
            on_listening=lambda: say(listening),
        )
        tune_gc()
        # Background tasks beside uvicorn's serve, not in a TaskGroup with it: a pass never stops
        # the receiver (each logs its failures), and serve's own exits (a signal, a port lost)
        # reach the entry point as themselves, not wrapped in an exception group. With workers,
        # only the first runs them: one maintenance, one alert evaluation per interval.
        background: list[asyncio.Task[None]] = []
        if not worker or worker.startswith("1/"):
            background.append(
                asyncio.create_task(
                    maintenance_loop(store, settings.retention, now_ms=wall_clock_ms),
                    name="maintenance",
                )
            )
            if settings.alerts_interval_s > 0:
                say(f"alerts: evaluated and delivered every {settings.alerts_interval_s:g} s")
                background.append(
                    asyncio.create_task(
                        AlertScheduler(
                            store,
                            store,
                            plant,
                            settings.smtp,
                            interval_s=settings.alerts_interval_s,
                            now_ms=wall_clock_ms,
                        ).run(),
                        name="alert-scheduler",
                    )
                )
        try:
            await server.serve(sockets=None if sock is None else [sock])
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await store.close()


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def notice_logger() -> logging.Logger:
    """The logger of the receiver's start-up notices (created token files, listening): shown at
    every log level, in the log's format."""
    notices = logging.getLogger("cloud.notice")
    notices.setLevel(logging.INFO)
    return notices
