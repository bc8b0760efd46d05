"""`edge-agent`: run the gateway daemon, show its status, check a config file, probe sources.

Global options (`--config`, `--log-level`, `--log-format`) go before or after the subcommand.
`--config` defaults to /var/lib/edge-agent/agent.toml (`DEFAULT_CONFIG`, the one place `edgectl
enroll`, the unit file and docs/operations.md use) for every subcommand;
`check-config` also takes the file as its argument.

Exit codes (stable, for scripts and systemd):
    0  success (for `run`: stopped by SIGTERM/SIGINT after a clean flush)
    2  bad command line (argparse)
    3  configuration problem (the file, or the key file it names)
    4  buffer problem (cannot open, in use by another agent, unreadable)
    5  the agent failed while running (the reason is logged)
    1  `probe`: a source read nothing within --timeout
User errors print one line each on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import wire.version
from agent.config import load_config
from agent.errors import AgentError, ConfigError, StoreError
from agent.keyfile import load_private_key
from agent.remote import load_running
from agent.runtime import Agent
from agent.status import format_status, read_status
from hostio.logformat import LEVELS, LogFormat, configure

EXIT_OK = 0
EXIT_CONFIG = 3
EXIT_STORE = 4
EXIT_FAILED = 5
EXIT_NOTHING_READ = 1  # `probe`: a source read nothing within --timeout
PROG = "edge-agent"
DEFAULT_CONFIG = "/var/lib/edge-agent/agent.toml"

log = logging.getLogger("agent")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure(PROG, args.log_level, LogFormat(args.log_format))
    # httpx logs every request at INFO: a line per batch would flood the journal.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{PROG}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_STORE
    except AgentError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # `edge-agent status | head`: the reader has all it wanted. Point stdout at /dev/null
        # so the interpreter's final flush does not raise (and print a traceback) again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    return code


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the subcommands the defaults are SUPPRESS, so an option given before the subcommand
    # is not overwritten by the subcommand's default.
    def default(value: str) -> str:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        default=default(DEFAULT_CONFIG),
        help=f"the TOML config file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument("--log-level", default=default("info"), choices=LEVELS)
    parser.add_argument(
        "--log-format",
        default=default(LogFormat.TEXT.value),
        choices=[f.value for f in LogFormat],
        help="text (default) or json: one object per line",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Tierless gateway agent.")
    parser.add_argument("--version", action=wire.version.VersionAction, prog=PROG)
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent until SIGTERM")
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="buffer, uplink, chain, clock and loss state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)
    check = sub.add_parser("check-config", help="validate a config file and its key file")
    check.add_argument("file", nargs="?", help="the TOML config file (default: --config)")
    check.set_defaults(func=_check_config)
    probe = sub.add_parser(
        "probe", help="read each source once, print what it read (commissioning), exit"
    )
    probe.add_argument("--source", help="only the source of this name")
    probe.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait per source (default 10)"
    )
    probe.set_defaults(func=_probe)
    for p in (run, status, check, probe):
        _global_options(p, top=False)
    return parser


def _run(args: argparse.Namespace) -> int:
    # agent.toml, or a config pushed from the cloud on top of it (agent.remote)
    running = load_running(Path(args.config))
    try:
        asyncio.run(Agent(running.config, running=running).run())
    except KeyboardInterrupt:  # before the signal handlers were installed
        return EXIT_FAILED
    except AgentError:
        raise
    except Exception as exc:  # a task failed (TaskGroup wraps it), or a bug
        first = _first(exc)
        if isinstance(first, AgentError):
            raise first from None
        # Not a user error: the traceback goes to the journal, one line to the operator.
        log.error("failed: %r", first, exc_info=first)
        return EXIT_FAILED
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    status = read_status(load_config(args.config))
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    sys.stdout.flush()  # a closed pipe shows here, inside main's handler
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    args.file = args.file or args.config
    config = load_config(args.file)
    load_private_key(config.device.key_file)
    # The CA bundle is loaded the way the uplink will load it.
    if config.cloud.ca_file:
        import ssl

        try:
            ssl.create_default_context(cafile=config.cloud.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [f"{args.file}: cloud.ca_file: cannot load '{config.cloud.ca_file}': {exc}"]
            ) from exc
    print(f"{args.file}: ok")
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    from agent.probe import probe

    config = load_config(args.config)

    def say(line: str) -> None:
        print(line, flush=True)

    empty = asyncio.run(probe(config, only=args.source, timeout_s=args.timeout, say=say))
    # 1: a source read nothing in time (the lines above say which), for scripts
    return EXIT_OK if empty == 0 else EXIT_NOTHING_READ


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
