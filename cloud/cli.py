"""`edge-cloud serve|migrate`: flags, environment variables, one-line errors.

Every option can also come from an environment variable (for the container); a flag wins over
the variable, the variable over the default:

    --db                 TIERLESS_DB                 sqlite:///./tierless-cloud.db
    --host               TIERLESS_HOST               127.0.0.1
    --port               TIERLESS_PORT               8080
    --public-url         TIERLESS_PUBLIC_URL         http(s)://HOST:PORT
    --tls-cert/--tls-key TIERLESS_TLS_CERT/_KEY      (none: plain HTTP)
    --admin-token-file   TIERLESS_ADMIN_TOKEN_FILE   (or TIERLESS_ADMIN_TOKEN; else created)
    --read-token-file    TIERLESS_READ_TOKEN_FILE    (or TIERLESS_READ_TOKEN; else created)
    --viewer-token-file  TIERLESS_VIEWER_TOKEN_FILE  (or TIERLESS_VIEWER_TOKEN; else none): opens
                         the dashboard only, for the plant's screens and managers
    --timezone           TIERLESS_TIMEZONE           UTC: whose calendar day the dashboard shows
    --plant              TIERLESS_PLANT_FILE         (none): processes and shifts (docs/figures.md)
    --alerts-interval-s  TIERLESS_ALERTS_INTERVAL_S  300: evaluate and deliver alerts; 0: off
    (SMTP for alert emails: TIERLESS_SMTP_HOST, TIERLESS_SMTP_PORT, TIERLESS_SMTP_FROM)
    --config-key-file    TIERLESS_CONFIG_KEY_FILE    (else created in the token dir): the
                         Ed25519 key that signs pushed configs (cloud.receiver.configkey)
    --token-dir          TIERLESS_TOKEN_DIR          beside the SQLite file, else the cwd
    --allow-insecure-http TIERLESS_ALLOW_INSECURE_HTTP=1
    --device-rate/--device-burst TIERLESS_DEVICE_RATE/_BURST      10/s, 60
    --enroll-rate/--enroll-burst TIERLESS_ENROLL_RATE/_BURST      5/min, 10 (per address)
    --limit-concurrency  TIERLESS_LIMIT_CONCURRENCY  200 requests being handled at once
    --head-timeout       TIERLESS_HEAD_TIMEOUT       5 s for a whole request head
    --keep-alive         TIERLESS_KEEP_ALIVE         20 s idle before a connection is closed
    --max-waiting-per-address TIERLESS_MAX_WAITING_PER_ADDRESS  64 connections without a request
    --max-requests-per-address TIERLESS_MAX_REQUESTS_PER_ADDRESS 50 requests being handled
    --pool-size          TIERLESS_POOL_SIZE          8 (per worker)
    --retention          TIERLESS_RETENTION          keep raw readings forever; e.g.
                         electricity=400,water=90,*=730 (days per medium, * the others)
    --workers            TIERLESS_WORKERS            1 receiver process; N>1 needs PostgreSQL
                         (N processes on one port with SO_REUSEPORT: `cloud.workers`)
    --log-level          TIERLESS_LOG_LEVEL          info (before or after the subcommand)
    --log-format         TIERLESS_LOG_FORMAT         text, or json (one object per line)

Exit codes: 0 done, 1 the database refused or is unreachable, 2 bad configuration (a port
already in use included: it is checked before anything is created). Errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import wire.version
from cloud.apps.alert_delivery import SmtpConfig
from cloud.apps.alerts_api import smtp_from_env
from cloud.apps.plantfile import load_plant
from cloud.config import ConnectionLimits, Limits, normalise_public_url
from cloud.errors import CloudError, ConfigError, StoreError
from cloud.receiver.configkey import load_or_create_config_key
from cloud.receiver.tokenfiles import check_token, load_or_create, read_token_file
from cloud.server import ServeSettings, notice_logger, serve, stderr
from cloud.storage.retention import parse_retention
from cloud.storage.store import describe_url, store_from_url
from cloud.workers import check_workers, run_workers
from hostio.logformat import LEVELS, LogFormat, configure
from hostio.loopback import is_loopback

DEFAULT_DB = "sqlite:///./tierless-cloud.db"


def _log_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Before or after the subcommand: on the subcommand an option not given leaves the
    # top-level value alone (SUPPRESS), and None at the top means "the variable, else default".
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--log-level", choices=LEVELS, default=default)
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=default,
        help="text (default) or json: one object per line",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-cloud", description="Tierless receiver: verify, de-duplicate, store."
    )
    parser.add_argument("--version", action=wire.version.VersionAction, prog="edge-cloud")
    _log_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run the receiver")
    migrate_p = sub.add_parser("migrate", help="apply pending schema migrations")
    for p in (serve_p, migrate_p):
        p.add_argument("--db", help=f"sqlite:///path.db or postgresql://… (default {DEFAULT_DB})")
        _log_options(p, top=False)
    serve_p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve_p.add_argument("--port", type=int, help="port (default 8080)")
    serve_p.add_argument("--public-url", help="base URL gateways sign (default http://HOST:PORT)")
    serve_p.add_argument("--tls-cert", help="PEM certificate chain (TLS 1.2+)")
    serve_p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve_p.add_argument("--admin-token-file", type=Path, help="file (mode 0600) with the token")
    serve_p.add_argument("--read-token-file", type=Path, help="file (mode 0600) with the token")
    serve_p.add_argument(
        "--viewer-token-file",
        type=Path,
        help="file (mode 0600) with a token that opens the dashboard only (default: none)",
    )
    serve_p.add_argument(
        "--timezone", help="IANA time zone of the dashboard's day, e.g. Europe/Berlin (UTC)"
    )
    serve_p.add_argument(
        "--plant", type=Path, help="TOML file naming the processes and shifts (docs/figures.md)"
    )
    serve_p.add_argument(
        "--alerts-interval-s",
        type=float,
        help="seconds between alert evaluations and deliveries (default 300; 0: off)",
    )
    serve_p.add_argument("--token-dir", type=Path, help="where tokens are created if not given")
    serve_p.add_argument(
        "--config-key-file",
        type=Path,
        help="PEM Ed25519 key (mode 0600) that signs pushed configs (default: created)",
    )
    serve_p.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=None,
        help="serve plain HTTP on a non-loopback address (TLS ends at a proxy)",
    )
    serve_p.add_argument("--device-rate", type=float, help="batches/s per device (default 10)")
    serve_p.add_argument("--device-burst", type=int, help="burst per device (default 60)")
    serve_p.add_argument(
        "--enroll-rate", type=float, help="enrolments/min per client address (default 5)"
    )
    serve_p.add_argument(
        "--enroll-burst", type=int, help="enrolment burst per address (default 10)"
    )
    serve_p.add_argument(
        "--limit-concurrency", type=int, help="requests being handled at once (default 200)"
    )
    serve_p.add_argument(
        "--head-timeout", type=float, help="seconds for a whole request head (default 5)"
    )
    serve_p.add_argument(
        "--keep-alive", type=int, help="seconds an idle connection stays open (default 20)"
    )
    serve_p.add_argument(
        "--max-waiting-per-address",
        type=int,
        help="connections without a request being handled, per client address (default 64)",
    )
    serve_p.add_argument(
        "--max-requests-per-address",
        type=int,
        help="requests being handled at once, per client address (default 50)",
    )
    serve_p.add_argument("--pool-size", type=int, help="PostgreSQL connections (default 8)")
    serve_p.add_argument(
        "--retention",
        help="days of raw readings kept per medium, e.g. electricity=400,*=730 (default forever)",
    )
    serve_p.add_argument(
        "--workers",
        type=int,
        help="receiver processes on the one port (default 1; more than 1 needs PostgreSQL)",
    )
    return parser


def _pick(flag: object, env: Mapping[str, str], name: str, default: str | None) -> str | None:
    if flag is not None:
        return str(flag)
    return env.get(name) or default


def _int(value: str | None, what: str) -> int:
    try:
        return int(value or "")
    except ValueError as exc:
        raise ConfigError([f"{what} must be an integer, not {value!r}"]) from exc


def _float(value: str | None, what: str) -> float:
    try:
        return float(value or "")
    except ValueError as exc:
        raise ConfigError([f"{what} must be a number, not {value!r}"]) from exc


def _token_dir(db_url: str) -> Path:
    if db_url.startswith("sqlite:///"):
        return Path(db_url.removeprefix("sqlite:///")).resolve().parent
    return Path.cwd()


def check_port_free(host: str, port: int) -> None:
    """ConfigError if `host:port` cannot be bound now (in use, or not this machine's address).
    Bound the way uvicorn binds (SO_REUSEADDR), then released at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ConfigError([f"cannot listen on {host}:{port}: {why}"]) from exc


def log_settings(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, LogFormat]:
    level = _pick(args.log_level, env, "TIERLESS_LOG_LEVEL", "info") or "info"
    fmt = _pick(args.log_format, env, "TIERLESS_LOG_FORMAT", "text") or "text"
    if level not in LEVELS:
        raise ConfigError([f"log level {level!r} is not one of {', '.join(LEVELS)}"])
    try:
        return level, LogFormat(fmt)
    except ValueError as exc:
        raise ConfigError([f"log format {fmt!r} is not text or json"]) from exc


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError([f"time zone {name!r} is not an IANA zone (e.g. Europe/Berlin)"]) from exc
    return name


def serve_settings(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    check_port: Callable[[str, int], None] | None = None,
) -> tuple[ServeSettings, list[str]]:
    """Settings from flags and environment, and notices to print (created token files).
    `check_port` (the entry point passes `check_port_free`) runs before anything is created."""
    db = _pick(args.db, env, "TIERLESS_DB", DEFAULT_DB) or DEFAULT_DB
    store_from_url(db)  # validates the URL before anything is created
    retention = parse_retention(_pick(args.retention, env, "TIERLESS_RETENTION", "") or "")
    workers = check_workers(_int(_pick(args.workers, env, "TIERLESS_WORKERS", "1"), "workers"), db)
    host = _pick(args.host, env, "TIERLESS_HOST", "127.0.0.1") or "127.0.0.1"
    port = _int(_pick(args.port, env, "TIERLESS_PORT", "8080"), "port")
    if not 0 < port < 65536:
        raise ConfigError([f"port {port} is not in 1..65535"])
    timezone = _timezone(_pick(args.timezone, env, "TIERLESS_TIMEZONE", "UTC") or "UTC")
    log_level, log_format = log_settings(args, env)
    plant_file = _pick(args.plant, env, "TIERLESS_PLANT_FILE", None)
    plant = load_plant(Path(plant_file), default_tz=timezone) if plant_file else None
    alerts_interval_s = _float(
        _pick(args.alerts_interval_s, env, "TIERLESS_ALERTS_INTERVAL_S", "300"),
        "alerts interval",
    )
    if not 0 <= alerts_interval_s <= 86_400:
        raise ConfigError([f"alerts interval {alerts_interval_s:g} s is not in 0..86400"])
    cert = _pick(args.tls_cert, env, "TIERLESS_TLS_CERT", None)
    key = _pick(args.tls_key, env, "TIERLESS_TLS_KEY", None)
    if (cert is None) != (key is None):
        raise ConfigError(["--tls-cert and --tls-key go together"])
    for path in (cert, key):
        if path is not None and not Path(path).is_file():
            raise ConfigError([f"TLS file {path} does not exist"])
    insecure_env = env.get("TIERLESS_ALLOW_INSECURE_HTTP", "") in ("1", "true", "yes")
    insecure = bool(args.allow_insecure_http) or insecure_env
    if cert is None and not is_loopback(host) and not insecure:
        raise ConfigError(
            [
                f"refusing plain HTTP on {host}: give --tls-cert/--tls-key, or "
                "--allow-insecure-http when a TLS proxy sits in front"
            ]
        )
    public = _pick(args.public_url, env, "TIERLESS_PUBLIC_URL", None)
    if public is None:
        if host in ("0.0.0.0", "::"):  # noqa: S104 - a check, not a bind
            raise ConfigError([f"--public-url is required when listening on {host}"])
        scheme = "https" if cert else "http"
        public = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
    public = normalise_public_url(public)
    if check_port is not None:
        check_port(host, port)

    token_dir = Path(_pick(args.token_dir, env, "TIERLESS_TOKEN_DIR", None) or _token_dir(db))
    notices = []
    tokens = []
    for what, flag in (("admin", args.admin_token_file), ("read", args.read_token_file)):
        upper = what.upper()
        file = _pick(flag, env, f"TIERLESS_{upper}_TOKEN_FILE", None)
        token, notice = load_or_create(
            file=Path(file) if file else None,
            value=env.get(f"TIERLESS_{upper}_TOKEN") or None,
            default_file=token_dir / f"tierless-{what}.token",
            what=what,
        )
        tokens.append(token)
        if notice:
            notices.append(notice)
    key_file = _pick(args.config_key_file, env, "TIERLESS_CONFIG_KEY_FILE", None)
    config_key, notice = load_or_create_config_key(
        file=Path(key_file) if key_file else None,
        default_file=token_dir / "tierless-config-signing.key",
    )
    if notice:
        notices.append(notice)
    # The viewer token is optional: never created, and not the read token (which opens the
    # whole query API).
    viewer_file = _pick(args.viewer_token_file, env, "TIERLESS_VIEWER_TOKEN_FILE", None)
    viewer_value = env.get("TIERLESS_VIEWER_TOKEN") or None
    viewer = (
        read_token_file(Path(viewer_file))
        if viewer_file
        else check_token(viewer_value, "the viewer token variable")
        if viewer_value
        else ""
    )
    if viewer and viewer in tokens:
        raise ConfigError(["the viewer token must differ from the admin and read tokens"])
    defaults = Limits()
    limits = Limits(
        device_rate_per_s=_float(
            _pick(args.device_rate, env, "TIERLESS_DEVICE_RATE", str(defaults.device_rate_per_s)),
            "device rate",
        ),
        device_burst=_int(
            _pick(args.device_burst, env, "TIERLESS_DEVICE_BURST", str(defaults.device_burst)),
            "device burst",
        ),
        enroll_rate_per_s=_float(
            _pick(args.enroll_rate, env, "TIERLESS_ENROLL_RATE", "5"), "enrol rate"
        )
        / 60,
        enroll_burst=_int(
            _pick(args.enroll_burst, env, "TIERLESS_ENROLL_BURST", str(defaults.enroll_burst)),
            "enrol burst",
        ),
    )
    conn_defaults = ConnectionLimits()
    connections = ConnectionLimits(
        head_timeout_s=_float(
            _pick(
                args.head_timeout, env, "TIERLESS_HEAD_TIMEOUT", str(conn_defaults.head_timeout_s)
            ),
            "head timeout",
        ),
        keep_alive_s=_int(
            _pick(args.keep_alive, env, "TIERLESS_KEEP_ALIVE", str(conn_defaults.keep_alive_s)),
            "keep-alive",
        ),
        max_waiting_per_address=_int(
            _pick(
                args.max_waiting_per_address,
                env,
                "TIERLESS_MAX_WAITING_PER_ADDRESS",
                str(conn_defaults.max_waiting_per_address),
            ),
            "max waiting per address",
        ),
        max_requests_per_address=_int(
            _pick(
                args.max_requests_per_address,
                env,
                "TIERLESS_MAX_REQUESTS_PER_ADDRESS",
                str(conn_defaults.max_requests_per_address),
            ),
            "max requests per address",
        ),
    )
    settings = ServeSettings(
        workers=workers,
        retention=retention,
        db_url=db,
        host=host,
        port=port,
        public_url=public,
        admin_token=tokens[0],
        read_token=tokens[1],
        tls_cert=cert,
        tls_key=key,
        limits=limits,
        connections=connections,
        limit_concurrency=_int(
            _pick(args.limit_concurrency, env, "TIERLESS_LIMIT_CONCURRENCY", "200"),
            "limit concurrency",
        ),
        pool_size=_int(_pick(args.pool_size, env, "TIERLESS_POOL_SIZE", "8"), "pool size"),
        log_level=log_level,
        log_format=log_format,
        viewer_token=viewer,
        timezone=timezone,
        plant=plant,
        alerts_interval_s=alerts_interval_s,
        smtp=_smtp(env),
        config_key=config_key,
    )
    return settings, notices


def _smtp(env: Mapping[str, str]) -> SmtpConfig | None:
    try:
        return smtp_from_env(env)
    except ValueError as exc:
        port = env.get("TIERLESS_SMTP_PORT")
        raise ConfigError([f"TIERLESS_SMTP_PORT must be an integer, not {port!r}"]) from exc


async def _migrate(db_url: str) -> str:
    store = store_from_url(db_url)
    await store.open()
    try:
        applied = await store.migrate()
        version = await store.schema_version()
    finally:
        await store.close()
    done = f"applied {applied}" if applied else "nothing to apply"
    return f"{describe_url(db_url)}: schema at version {version} ({done})"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    environ = os.environ if env is None else env
    try:
        level, fmt = log_settings(args, environ)
        configure("edge-cloud", level, fmt)
        if args.command == "migrate":
            db = _pick(args.db, environ, "TIERLESS_DB", DEFAULT_DB) or DEFAULT_DB
            stderr(asyncio.run(_migrate(db)))
            return 0
        settings, notices = serve_settings(args, environ, check_port=check_port_free)
        say = notice_logger().info
        for notice in notices:
            say(notice)
        if settings.workers > 1:
            return run_workers(settings, settings.workers, say=say)
        asyncio.run(serve(settings, say=say))
        return 0
    except ConfigError as exc:
        for problem in exc.problems:
            stderr(f"edge-cloud: error: {problem}")
        return 2
    except StoreError as exc:
        stderr(f"edge-cloud: error: {' '.join(str(exc).split())}")  # drivers' messages span lines
        return 1
    except CloudError as exc:  # pragma: no cover - every CloudError is one of the above
        stderr(f"edge-cloud: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
