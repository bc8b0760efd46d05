"""`edgectl`: enrolment tokens, gateway enrolment, key rotation, revocation, fleet bundles, doctor.

Operator commands talk to the receiver's admin API. The admin token comes from
`--admin-token-file FILE` (mode 0600), or the environment (`TIERLESS_ADMIN_TOKEN_FILE`,
`TIERLESS_ADMIN_TOKEN`), never from a command-line value, and it never appears in output, logs or
errors. Gateway commands (`enroll`, `rotate-key`, `doctor`, `opcua cert`) run on the gateway
and use the files in `--dir` (default /var/lib/edge-agent, `agentconfig.GATEWAY_DIR`).

Ids may start with "-": a key id is base64url (about one in 64 starts with "-") and a device id
is any printable text. In a command's own arguments, a word that starts with "-" but is none of
that command's options is taken as the id, and the word after an option that takes a value is its
value (`keys revoke -Xb3…`, `token create --device -gw1`); `--` ends the options as usual, and
is needed before an id that is itself one of the command's options or the start of one.

Output: results on stdout (a token, a table, JSON), progress and warnings on stderr, every error
one line `edgectl: …` on stderr with the exit code of its class (`provisioning.errors`); no
traceback unless `--debug`.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from provisioning import agentconfig, configcmd, fleet, secretfiles, views
from provisioning.client import AdminApi, Receiver, normalise_url
from provisioning.doctor import Doctor, Status
from provisioning.enroll import EnrollPlan, enroll, read_bundle, valid_device_id
from provisioning.errors import (
    EXIT_CODES,
    EXIT_OK,
    EXIT_SOME_FAILED,
    LocalError,
    ProvisioningError,
)
from provisioning.inputs import admin_token, enrolment_token, owner, parse_duration
from provisioning.opcuacert import make_cert
from provisioning.rotate import rotate
from wire.version import VersionAction

PROG = "edgectl"
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class Io:
    """Where a run reads and writes; the entry point passes the real ones, tests their own."""

    def __init__(
        self,
        env: Mapping[str, str],
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.env, self.stdin, self.stdout, self.stderr, self.now_ms = (
            env,
            stdin,
            stdout,
            stderr,
            now_ms,
        )

    def out(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def say(self, text: str) -> None:
        print(f"{PROG}: {text}", file=self.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        sys.argv[1:] if argv is None else argv,
        Io(os.environ, sys.stdin, sys.stdout, sys.stderr),
    )


def run(argv: Sequence[str], io: Io) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args, io)
    except ProvisioningError as exc:
        print(f"{PROG}: {exc}", file=io.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=io.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only on request
        if args.debug:
            traceback.print_exc(file=io.stderr)
        print(
            f"{PROG}: internal error ({type(exc).__name__}); please report it with the output "
            "of the same command with --debug",
            file=io.stderr,
        )
        return EXIT_INTERNAL
    return code


# -- the command line ---------------------------------------------------------------------


def _epilog() -> str:
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES)
    return (
        "exit codes:\n"
        f"{codes}\n"
        f"  {EXIT_INTERNAL:>3}  internal error (a bug; rerun with --debug)\n\n"
        "environment: TIERLESS_CLOUD_URL, TIERLESS_CA_FILE, TIERLESS_ADMIN_TOKEN_FILE,\n"
        "TIERLESS_ADMIN_TOKEN. Runbook: docs/provisioning.md"
    )


class _Parser(argparse.ArgumentParser):
    """A sub-command parser that lets ids start with "-" (see the module docstring)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None and self.get_default("func") is not None:  # a command, not a group
            # argparse has no public accessor for a parser's options: `_actions` it is
            takes_value = {s: a.nargs != 0 for a in self._actions for s in a.option_strings}
            args = dash_ids(list(args), takes_value)
        return super().parse_known_args(args, namespace)


def dash_ids(args: Sequence[str], takes_value: Mapping[str, bool]) -> list[str]:
    """`args` rewritten so that argparse reads a word starting with "-" that names no option as
    a positional (moved behind `--`), and the word after an option that takes a value as that
    value (`--opt=word`)."""
    words: list[str] = []
    ids: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return [*words, "--", *ids, *args[i + 1 :]]
        if word in takes_value:
            after = args[i + 1] if i + 1 < len(args) else None
            if takes_value[word] and after is not None and after not in (*takes_value, "--"):
                words.append(f"{word}={after}")
                i += 2
                continue
            words.append(word)
        elif word.startswith("-") and word != "-" and not _may_be_option(word, takes_value):
            ids.append(word)
        else:
            words.append(word)
        i += 1
    return [*words, "--", *ids] if ids else words


def _may_be_option(word: str, options: Iterable[str]) -> bool:
    """An option, `--option=value`, or an abbreviation argparse may expand or call ambiguous
    (its error then names the option, not the next word, which may be a secret)."""
    name = word.split("=", 1)[0]
    return any(option.startswith(name) for option in options)


class _RefuseSecretValue(argparse.Action):
    """`--admin-token VALUE`: refused without repeating the value (it is a secret)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(
            f"{self.option_strings[0]} is not accepted: a token on the command line shows in "
            "the process list and shell history; use --admin-token-file FILE (mode 0600) or "
            "TIERLESS_ADMIN_TOKEN_FILE / TIERLESS_ADMIN_TOKEN"
        )


def _add_gateway_dir(p: argparse.ArgumentParser) -> None:
    """`--dir` of the commands that run on the gateway: its one directory by default."""
    p.add_argument(
        "--dir",
        type=Path,
        default=agentconfig.GATEWAY_DIR,
        help=f"the agent's directory (default {agentconfig.GATEWAY_DIR})",
    )


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,  # "--admin-token X" must not become "--admin-token-file X"
        description="Tierless provisioning: enrol gateways, rotate and revoke keys, plan fleets.",
        epilog=_epilog(),
        formatter_class=fmt,
    )
    parser.add_argument("--version", action=VersionAction, prog=PROG)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.set_defaults(debug=False)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    operator = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    operator.add_argument("--cloud", metavar="URL", help="receiver URL (env TIERLESS_CLOUD_URL)")
    operator.add_argument(
        "--ca-file", metavar="PEM", help="CA bundle for the receiver's TLS (env TIERLESS_CA_FILE)"
    )
    operator.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="file (mode 0600) holding the admin token (env TIERLESS_ADMIN_TOKEN_FILE, or the "
        "token itself in TIERLESS_ADMIN_TOKEN)",
    )
    operator.add_argument(
        "--admin-token", nargs="?", action=_RefuseSecretValue, help=argparse.SUPPRESS
    )
    operator.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http to a non-loopback receiver (TLS ends at a trusted proxy)",
    )

    def add(
        group: Any, name: str, func: Callable[[argparse.Namespace, Io], int], help_: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=_epilog(),
            formatter_class=fmt,
            parents=[operator] if func in _OPERATOR else [],
        )
        p.set_defaults(func=func)
        return p

    token = sub.add_parser("token", help="enrolment tokens", allow_abbrev=False).add_subparsers(
        dest="what", required=True, metavar="ACTION"
    )
    p = add(token, "create", _token_create, "issue a one-time enrolment token for a device")
    p.add_argument(
        "--device", "--device-id", dest="device", required=True, metavar="ID", help="device id"
    )
    p.add_argument("--ttl", default="24h", help="validity: 90s, 30m, 24h, 7d (default 24h)")
    p.add_argument("--out", metavar="FILE", help="write the token to FILE (0600), not stdout")

    devices = sub.add_parser(
        "devices", help="list, show, revoke, disable", allow_abbrev=False
    ).add_subparsers(dest="what", required=True, metavar="ACTION")
    p = add(devices, "list", _devices_list, "every device with its sync state")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add(devices, "show", _devices_show, "one device: keys, sync state, chain events")
    p.add_argument("device", metavar="ID")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    for action, func, text in (
        ("revoke", _devices_revoke, "revoke every key of a device (it must re-enrol)"),
        ("disable", _devices_disable, "refuse the device's uploads until enabled again"),
        ("enable", _devices_enable, "accept a disabled device's uploads again"),
    ):
        p = add(devices, action, func, text)
        p.add_argument("device", metavar="ID")

    config_p = sub.add_parser(
        "config", help="push agent configs to gateways, see where each stands", allow_abbrev=False
    ).add_subparsers(dest="what", required=True, metavar="ACTION")
    p = add(config_p, "push", _config_push, "check, sign and store a config for gateways")
    p.add_argument("file", metavar="FILE", help="the agent config to push (TOML)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", metavar="ID", help="one gateway")
    target.add_argument(
        "--tag", metavar="NAME=VALUE", help="every gateway with a series tagged so (site=...)"
    )
    p = add(config_p, "status", _config_status, "each gateway's desired and running config")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    keys = sub.add_parser("keys", help="revoke one key", allow_abbrev=False).add_subparsers(
        dest="what", required=True, metavar="ACTION"
    )
    p = add(keys, "revoke", _keys_revoke, "revoke one key by its key id")
    p.add_argument("keyid", metavar="KEYID")

    fleet_p = sub.add_parser(
        "fleet", help="install bundles for many gateways", allow_abbrev=False
    ).add_subparsers(dest="what", required=True, metavar="ACTION")
    p = add(fleet_p, "plan", _fleet_plan, "tokens and install bundles from a CSV file")
    p.add_argument("csv", metavar="FILE.csv", help="columns: device_id, site, area, process")
    p.add_argument("--out", required=True, metavar="DIR", help="where the bundles go")
    p.add_argument("--ttl", default="7d", help="token validity (default 7d, at most 30d)")
    p.add_argument(
        "--gateway-url",
        metavar="URL",
        help="the receiver URL gateways use, if not --cloud (e.g. admin API on another name)",
    )

    p = add(sub, "enroll", _enroll, "make this gateway's key and enrol it (run on the gateway)")
    _add_gateway_dir(p)
    p.add_argument("--cloud", metavar="URL", help="receiver URL (from the bundle if given)")
    p.add_argument(
        "--device",
        "--device-id",
        dest="device",
        metavar="ID",
        help="device id (default: the one DIR/agent.toml names, when enrolling again)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--token-file", metavar="FILE", help="file holding the token (- : stdin)")
    source.add_argument("--bundle", type=Path, metavar="DIR", help="install bundle (fleet plan)")
    source.add_argument(
        "--token", help="the token itself: avoid, it shows in the process list and shell history"
    )
    p.add_argument("--ca-file", metavar="PEM", help="CA bundle of the receiver (copied to DIR)")
    p.add_argument("--replace", action="store_true", help="enrol again: replace the key in DIR")
    p.add_argument("--allow-insecure-http", action="store_true", help="plain http, not loopback")
    p.add_argument(
        "--buffer-path",
        default=agentconfig.BUFFER_NAME,
        help="buffer file for a new agent.toml (default: buffer.db beside it)",
    )
    p.add_argument("--owner", metavar="USER", help="as root: give the files to USER (the agent)")
    p.epilog = (
        "The token is read from --token-file, the bundle, or standard input (hidden prompt on a\n"
        "terminal). --token works but exposes the token to other users (ps) and shell history.\n\n"
        + _epilog()
    )

    p = add(sub, "rotate-key", _rotate_key, "replace the device key (run on the gateway)")
    _add_gateway_dir(p)
    p.add_argument("--config", type=Path, help="agent.toml if not DIR/agent.toml")

    p = add(sub, "doctor", _doctor, "check this gateway's setup (run on the gateway)")
    _add_gateway_dir(p)
    p.add_argument("--config", type=Path, help="agent.toml if not DIR/agent.toml")

    opcua = sub.add_parser(
        "opcua", help="OPC UA client certificates", allow_abbrev=False
    ).add_subparsers(dest="what", required=True, metavar="ACTION")
    p = add(
        opcua,
        "cert",
        _opcua_cert,
        "make an OPC UA source's client certificate and key (run on the gateway, as the "
        "agent's user)",
    )
    _add_gateway_dir(p)
    p.add_argument("--config", type=Path, help="agent.toml if not DIR/agent.toml")
    p.add_argument(
        "--source", metavar="NAME", help="the opcua source (needed when several use security)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing certificate and key")
    return parser


# -- operator commands --------------------------------------------------------------------


def _receiver(args: argparse.Namespace, io: Io) -> Receiver:
    url = args.cloud or io.env.get("TIERLESS_CLOUD_URL")
    if not url:
        raise LocalError("no receiver URL: pass --cloud URL or set TIERLESS_CLOUD_URL")
    url = normalise_url(url, allow_insecure_http=args.allow_insecure_http)
    return Receiver(url, ca_file=args.ca_file or io.env.get("TIERLESS_CA_FILE") or None)


def _admin(args: argparse.Namespace, io: Io) -> tuple[Receiver, AdminApi]:
    token = admin_token(args.admin_token_file, io.env)
    receiver = _receiver(args, io)
    return receiver, AdminApi(receiver, token)


MAX_TOKEN_TTL_S = 30 * 86400  # the receiver's default limit (cloud.config.Config.max_token_ttl_s)


def _check_ttl(text: str) -> int:
    ttl_s = parse_duration(text)
    if ttl_s > MAX_TOKEN_TTL_S:
        raise LocalError(
            f"--ttl {text}: an enrolment token is valid at most 30d (the receiver refuses longer)"
        )
    return ttl_s


def _refuse_a_shared_stdout(stdout: TextIO) -> None:
    """`token create > file` would leave the secret in a file others can read (umask 022 makes
    it 0644): refuse before a token is issued, and say how to do it safely."""
    try:
        info = os.fstat(stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (a test's buffer)
        return
    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
        raise LocalError(
            f"standard output is a file readable by others (mode {stat.S_IMODE(info.st_mode):04o}):"
            " the token would be shared; use --out FILE (written 0600), or set umask 077 first"
        )


def _token_create(args: argparse.Namespace, io: Io) -> int:
    if not valid_device_id(args.device):
        raise LocalError("device id must be 1-128 printable characters without outer spaces")
    ttl_s = _check_ttl(args.ttl)
    if not args.out:
        _refuse_a_shared_stdout(io.stdout)
    receiver, admin = _admin(args, io)
    with receiver:
        issued = admin.create_token(args.device, ttl_s)
    until = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(issued.expires_ms / 1000))
    if args.out:
        secretfiles.write_secret_file(
            Path(args.out), issued.token.encode("ascii") + b"\n", replace=False
        )
        io.say(f"token for {args.device!r} written to {args.out} (mode 0600), valid until {until}")
    else:
        io.out(issued.token)
        io.say(f"token for {args.device!r}, valid once until {until}; it is not shown again")
    return EXIT_OK


def _config_push(args: argparse.Namespace, io: Io) -> int:
    receiver, admin = _admin(args, io)
    with receiver:
        pushed = configcmd.push(admin, args.file, device=args.device, tag=args.tag)
    for line in configcmd.pushed_lines(pushed):
        io.out(line)
    return EXIT_OK


def _config_status(args: argparse.Namespace, io: Io) -> int:
    receiver, admin = _admin(args, io)
    with receiver:
        states = admin.config_status()
    io.out(configcmd.status_json(states) if args.json else configcmd.status_table(states))
    return EXIT_OK


def _devices_list(args: argparse.Namespace, io: Io) -> int:
    receiver, admin = _admin(args, io)
    with receiver:
        devices = admin.list_devices()
    if args.json:
        io.out(json.dumps({"devices": msgspec.to_builtins(devices)}, indent=2))
    else:
        io.out(views.device_table(devices, io.now_ms()))
    return EXIT_OK


def _devices_show(args: argparse.Namespace, io: Io) -> int:
    receiver, admin = _admin(args, io)
    with receiver:
        device = admin.device(args.device)
    if args.json:
        io.out(json.dumps(msgspec.to_builtins(device), indent=2))
    else:
        io.out(views.device_detail(device, io.now_ms()))
    return EXIT_OK


def _devices_revoke(args: argparse.Namespace, io: Io) -> int:
    receiver, admin = _admin(args, io)
    with receiver:
        result = admin.revoke_device(args.device)
    io.out(
        f"revoked {result.revoked} key(s) of {args.device!r}: its uploads are refused "
        "(403) from now on; it keeps its data and can re-enrol with a new token"
    )
    return EXIT_OK


def _set_status(args: argparse.Namespace, io: Io, action: str) -> int:
    receiver, admin = _admin(args, io)
    with receiver:
        result = admin.set_status(args.device, action)
    io.out(f"{args.device!r} is now {result.status}")
    return EXIT_OK


def _devices_disable(args: argparse.Namespace, io: Io) -> int:
    return _set_status(args, io, "disable")


def _devices_enable(args: argparse.Namespace, io: Io) -> int:
    return _set_status(args, io, "enable")


def _keys_revoke(args: argparse.Namespace, io: Io) -> int:
    receiver, admin = _admin(args, io)
    with receiver:
        result = admin.revoke_key(args.keyid)
    io.out(f"revoked key {args.keyid} of {result.device_id!r}")
    return EXIT_OK


def _fleet_plan(args: argparse.Namespace, io: Io) -> int:
    ttl_s = _check_ttl(args.ttl)
    gateway_url = args.gateway_url
    if gateway_url:
        gateway_url = normalise_url(gateway_url, allow_insecure_http=args.allow_insecure_http)
    ca_path = args.ca_file or io.env.get("TIERLESS_CA_FILE")
    ca_pem = None
    if ca_path:
        try:
            ca_pem = Path(ca_path).read_bytes()
        except OSError as exc:
            raise LocalError(f"cannot read the CA bundle '{ca_path}': {exc.strerror}") from exc
    rows, bad = fleet.read_plan(Path(args.csv), io.say)
    receiver, admin = _admin(args, io)
    settings = fleet.FleetSettings(
        out=Path(args.out),
        gateway_url=gateway_url or receiver.base_url,
        ttl_s=ttl_s,
        ca_pem=ca_pem,
        allow_insecure_http=args.allow_insecure_http,
    )
    with fleet.locked(settings.out), receiver:
        report = fleet.run_plan(rows, bad, settings, admin, say=io.say, now_ms=io.now_ms)
    failed = [r for r in report.results if r.outcome == "failed"]
    summary = (
        f"fleet plan: {report.count('written')} bundle(s) written, {report.count('skipped')} "
        f"already done, {len(failed)} row(s) failed"
    )
    if report.count("not run"):
        summary += f", {report.count('not run')} not run"
    io.out(summary)
    for r in failed:
        io.out(f"  line {r.line}: {r.device_id or '?'}: {r.message}")
    if failed or report.fatal:
        io.out("fix those rows and run the same command again: finished rows are skipped")
    if report.fatal is not None:
        raise report.fatal
    return EXIT_OK if report.ok else EXIT_SOME_FAILED


# -- gateway commands ---------------------------------------------------------------------


def _enroll(args: argparse.Namespace, io: Io) -> int:
    device_id, cloud_url, ca_file = args.device, args.cloud, args.ca_file
    ca_pem: bytes | None = None
    agent_toml = None
    if args.bundle is not None:
        bundle = read_bundle(args.bundle)
        for flag, value, theirs in (
            ("--device", device_id, bundle.device_id),
            ("--cloud", cloud_url, bundle.cloud_url),
        ):
            if value is not None and value.rstrip("/") != theirs.rstrip("/"):
                raise LocalError(f"{flag} {value!r} differs from the bundle's {theirs!r}")
        device_id, cloud_url, token = bundle.device_id, bundle.cloud_url, bundle.token
        agent_toml = bundle.agent_toml
        if bundle.ca_pem is not None and ca_file is None:
            ca_file, ca_pem = str(args.bundle / agentconfig.CA_NAME), bundle.ca_pem
    else:
        cloud_url = cloud_url or io.env.get("TIERLESS_CLOUD_URL") or None
        existing = args.dir / agentconfig.CONFIG_NAME
        if (device_id is None or cloud_url is None) and existing.is_file():
            # enrolling again (--replace): the config already names the device and receiver
            named = agentconfig.read(existing)
            device_id = device_id or named.device_id
            cloud_url = cloud_url or named.cloud_url
        if device_id is None:
            raise LocalError("--device ID is required (or --bundle)")
        if not cloud_url:
            raise LocalError("--cloud URL is required (or --bundle, or TIERLESS_CLOUD_URL)")
        token = enrolment_token(args.token, args.token_file, io.stdin, io.say)
    if ca_file is not None and ca_pem is None:
        try:
            ca_pem = Path(ca_file).read_bytes()
        except OSError as exc:
            raise LocalError(f"cannot read the CA bundle '{ca_file}': {exc.strerror}") from exc
    if not token:
        raise LocalError("no enrolment token given (--token-file, --bundle or standard input)")
    result = enroll(
        EnrollPlan(
            directory=args.dir,
            device_id=device_id,
            cloud_url=cloud_url,
            token=token,
            ca_file=ca_file,
            ca_pem=ca_pem,
            agent_toml=agent_toml,
            replace=args.replace,
            allow_insecure_http=args.allow_insecure_http,
            buffer_path=args.buffer_path,
            owner=owner(args.owner),
        ),
        say=io.say,
        now_ms=io.now_ms,
    )
    io.out(f"enrolled {result.device_id} with key {result.keyid}")
    io.out(f"key:    {result.key_file} (mode 0600; it never leaves this gateway)")
    kept = "written" if result.config_written else "kept as it was"
    io.out(f"config: {result.config_file} ({kept})")
    io.out(f"next:   edgectl doctor --dir {args.dir}; then start the agent")
    return EXIT_OK


def _rotate_key(args: argparse.Namespace, io: Io) -> int:
    result = rotate(args.dir, say=io.say, config_file=args.config)
    io.out(f"new key {result.new_keyid} is active for {result.device_id}")
    if result.old_not_after_ms is not None:
        until = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(result.old_not_after_ms / 1000))
        io.out(f"old key {result.old_keyid} stays valid until {until}")
    return EXIT_OK


def _doctor(args: argparse.Namespace, io: Io) -> int:
    failed = 0
    for check in Doctor(args.dir, config_file=args.config, now_ms=io.now_ms).run():
        io.out(check.line())
        failed += check.status is Status.FAIL
    io.out(f"{failed} check(s) failed" if failed else "all checks passed")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _opcua_cert(args: argparse.Namespace, io: Io) -> int:
    config = args.config or args.dir / agentconfig.CONFIG_NAME
    for line in make_cert(config, args.source, force=args.force).lines():
        io.out(line)
    return EXIT_OK


_OPERATOR = frozenset(
    {
        _token_create,
        _config_push,
        _config_status,
        _devices_list,
        _devices_show,
        _devices_revoke,
        _devices_disable,
        _devices_enable,
        _keys_revoke,
        _fleet_plan,
    }
)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
