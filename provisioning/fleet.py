"""`edgectl fleet plan`: one enrolment token and one install bundle per gateway of a CSV file.

The CSV has a header row naming its columns: `device_id` (required; `device` also accepted),
`site`, `area`, `process` (optional). Blank lines and lines starting with `#` are skipped;
other columns are ignored with a warning.

A bundle is a directory `OUT/<name>/` (name: the device id made safe for a file name), every
file mode 0600, the directory 0700:

    enrollment.token   the one-time token (a secret until used)
    agent.toml         the starting agent configuration, with the row's tags
    ca.pem             the receiver's CA bundle, when one was given
    bundle.json        {"format", "device_id", "cloud_url", "site", "area", "process",
                        "token_id", "expires_ms"}: written last, so its presence means done
    INSTALL.txt        the command to run on the gateway

Resumable: a bundle is built in `OUT/.<name>.partial/` and renamed into place when complete, so
a re-run skips rows whose bundle exists and rebuilds any partial one (the token issued for a
bundle that never completed is simply never used and expires). Rows are independent: a bad row
(or one the receiver refuses) is reported and the rest go on; only failures that would hit
every row (receiver unreachable, TLS, admin token refused) stop the run. Two runs on one OUT
directory exclude each other with a lock file.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from provisioning import agentconfig, secretfiles
from provisioning.client import AdminApi
from provisioning.enroll import BUNDLE_META, BUNDLE_TOKEN, valid_device_id
from provisioning.errors import (
    LocalError,
    ProvisioningError,
    TlsError,
    UnauthorizedError,
    UnreachableError,
)
from wire.models import MAX_NAME_LEN

BUNDLE_FORMAT = 1
_FATAL = (UnauthorizedError, UnreachableError, TlsError)
_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_DEVICE_COLUMNS = ("device_id", "device")
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    device_id: str
    tags: agentconfig.Tags


@dataclass(frozen=True, slots=True)
class RowResult:
    line: int
    device_id: str
    outcome: str  # "written" | "skipped" | "failed" | "not run"
    message: str


@dataclass(frozen=True, slots=True)
class FleetSettings:
    out: Path
    gateway_url: str  # what the gateways sign against (may differ from the admin URL)
    ttl_s: int
    ca_pem: bytes | None = None
    allow_insecure_http: bool = False


@dataclass(frozen=True, slots=True)
class PlanReport:
    results: list[RowResult]
    fatal: ProvisioningError | None

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.fatal is None and self.count("failed") == 0


def bundle_name(device_id: str) -> str:
    """A file name for the device's bundle: the id itself when it is already safe, else a
    readable form plus a short hash (so two ids never share a folder)."""
    if _SAFE.fullmatch(device_id) and not device_id.startswith("."):
        return device_id
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", device_id).strip("._")[:48] or "device"
    digest = hashlib.sha256(device_id.encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}"


def read_plan(path: Path, say: Say) -> tuple[list[Row], list[RowResult]]:
    """The good rows and a failed result for each bad one; LocalError if the file is unusable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LocalError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise LocalError(f"{path}: not UTF-8 text") from exc
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise LocalError(f"{path}: empty; expected a header row: device_id,site,area,process")
    reader = csv.reader([line for _, line in lines], strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise LocalError(f"{path}: not readable as CSV: {exc}") from exc
    header = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in records[0]]
    device_col = next((header.index(c) for c in _DEVICE_COLUMNS if c in header), None)
    if device_col is None:
        raise LocalError(
            f"{path}: line {lines[0][0]}: the header needs a device_id column "
            f"(found: {', '.join(header) or 'nothing'})"
        )
    known = {*_DEVICE_COLUMNS, *agentconfig.TAG_NAMES}
    extra = [h for h in header if h not in known]
    if extra:
        say(f"warning: {path}: ignoring column(s) {', '.join(extra)}")
    rows: list[Row] = []
    bad: list[RowResult] = []
    seen: dict[str, int] = {}
    for (line_no, _), fields in zip(lines[1:], records[1:], strict=True):
        problem, row = _row(line_no, header, device_col, fields)
        if row is not None and row.device_id in seen:
            problem = f"device id {row.device_id!r} is also on line {seen[row.device_id]}"
        if problem is not None or row is None:
            shown = fields[device_col].strip() if device_col < len(fields) else ""
            bad.append(RowResult(line_no, shown, "failed", problem or "unreadable"))
            continue
        seen[row.device_id] = line_no
        rows.append(row)
    return rows, bad


def _row(
    line_no: int, header: list[str], device_col: int, fields: list[str]
) -> tuple[str | None, Row | None]:
    if len(fields) != len(header):
        return f"has {len(fields)} fields, the header has {len(header)}", None
    device_id = fields[device_col].strip()
    if not device_id:
        return "device id is empty", None
    if not valid_device_id(device_id):
        return f"device id must be 1-{MAX_NAME_LEN} printable characters", None
    values = {}
    for name in agentconfig.TAG_NAMES:
        value = fields[header.index(name)].strip() if name in header else ""
        if len(value) > MAX_NAME_LEN or not value.isprintable():
            return f"{name} must be at most {MAX_NAME_LEN} printable characters", None
        values[name] = value
    return None, Row(line_no, device_id, agentconfig.Tags(**values))


def run_plan(
    rows: list[Row],
    bad: list[RowResult],
    settings: FleetSettings,
    admin: AdminApi,
    *,
    say: Say,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> PlanReport:
    """Build every bundle, reporting each row; stop early only for a fatal error."""
    for result in bad:
        say(f"line {result.line}: {result.device_id or '?'}: failed: {result.message}")
    results: list[RowResult] = list(bad)
    total = len(rows)
    width = len(str(total))
    for n, row in enumerate(rows, start=1):
        try:
            result = _one(row, settings, admin, now_ms())
        except _FATAL as exc:
            say(f"[{n:>{width}}/{total}] {row.device_id}: stopped: {exc}")
            results.extend(
                RowResult(r.line, r.device_id, "not run", "stopped before this row")
                for r in rows[n - 1 :]
            )
            return PlanReport(sorted(results, key=lambda r: r.line), exc)
        except ProvisioningError as exc:
            result = RowResult(row.line, row.device_id, "failed", str(exc))
        results.append(result)
        say(f"[{n:>{width}}/{total}] {row.device_id}: {result.outcome}: {result.message}")
    return PlanReport(sorted(results, key=lambda r: r.line), None)


def _one(row: Row, settings: FleetSettings, admin: AdminApi, now: int) -> RowResult:
    name = bundle_name(row.device_id)
    final = settings.out / name
    if (final / BUNDLE_META).exists():
        try:
            meta = json.loads((final / BUNDLE_META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LocalError(f"{final / BUNDLE_META} is unreadable; delete {final}") from exc
        if meta.get("device_id") != row.device_id:
            raise LocalError(f"{final} holds the bundle of {meta.get('device_id')!r}")
        expires = meta.get("expires_ms")
        if isinstance(expires, int) and expires <= now:
            return RowResult(
                row.line,
                row.device_id,
                "skipped",
                f"bundle exists but its token expired {_utc(expires)}; delete {final} and "
                "run again to issue a new one",
            )
        return RowResult(row.line, row.device_id, "skipped", f"bundle exists in {final}")
    partial = settings.out / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    old_umask = os.umask(0o077)
    try:
        partial.mkdir(mode=0o700)
    finally:
        os.umask(old_umask)
    issued = admin.create_token(row.device_id, settings.ttl_s)
    token, expires_ms = issued.token, issued.expires_ms
    files: dict[str, bytes] = {BUNDLE_TOKEN: token.encode("ascii") + b"\n"}
    if settings.ca_pem is not None:
        files[agentconfig.CA_NAME] = settings.ca_pem
    files[agentconfig.CONFIG_NAME] = agentconfig.render(
        device_id=row.device_id,
        cloud_url=settings.gateway_url,
        ca_file=agentconfig.CA_NAME if settings.ca_pem is not None else None,
        allow_insecure_http=settings.allow_insecure_http,
        tags=row.tags,
        written_by="edgectl fleet plan",
    ).encode("utf-8")
    files["INSTALL.txt"] = _install_text(row.device_id, name, expires_ms).encode("utf-8")
    meta = {
        "format": BUNDLE_FORMAT,
        "device_id": row.device_id,
        "cloud_url": settings.gateway_url,
        "site": row.tags.site,
        "area": row.tags.area,
        "process": row.tags.process,
        "token_id": token.split(".")[3],
        "expires_ms": expires_ms,
    }
    files[BUNDLE_META] = json.dumps(meta, indent=2).encode("utf-8") + b"\n"
    for file_name, data in files.items():  # bundle.json last: its presence means complete
        secretfiles.write_secret_file(partial / file_name, data, replace=False)
    secretfiles.move_into_place(partial, final)
    return RowResult(
        row.line, row.device_id, "written", f"{final} (token valid until {_utc(expires_ms)})"
    )


def _install_text(device_id: str, name: str, expires_ms: int) -> str:
    return (
        f"Install bundle for gateway {device_id!r}. The token in enrollment.token works once,\n"
        f"until {_utc(expires_ms)}. On the gateway, as the agent's user:\n\n"
        f"    sudo -u edge-agent edgectl enroll --bundle /path/to/{name} "
        "--dir /var/lib/edge-agent\n\n"
        "then delete this folder from the install medium. See docs/provisioning.md.\n"
    )


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Create OUT (0700) and hold its lock file; LocalError if another run holds it."""
    old_umask = os.umask(0o077)
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(out / ".fleet.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LocalError(f"cannot use '{out}': {exc.strerror}") from exc
    finally:
        os.umask(old_umask)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise LocalError(f"another edgectl fleet plan is writing to '{out}'") from exc
        yield
    finally:
        os.close(fd)
