"""`python -m soak [--seconds N] [--store sqlite|postgres|both]`: the chaos soak (`make soak`).

Runs the demo's plant under faults (see `soak.run`) once per store and prints, per run, the
demo's ledger and the faults injected; `--json` writes all of it. Exit codes: 0 every run's
ledger holds; 1 a run lost (beyond the kill -9 loss window), duplicated or made up a reading, or
the agent exited without being killed; 2 bad command line; 3 a run could not start (a missing
service names itself).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from demo.errors import DemoError
from demo.procs import free_port
from demo.run import Options
from soak.run import Soak, SoakOptions

ROOT = Path(__file__).resolve().parent.parent
PG_DSN = os.environ.get("TIERLESS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/tierless_test")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=90.0, help="per store (default 90)")
    p.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--seed", type=int, default=1, help="faults and noise are replayable")
    p.add_argument(
        "--outage-max-s", type=float, default=8.0, help="longest receiver outage (default 8)"
    )
    p.add_argument("--pg-dsn", default=PG_DSN, help="PostgreSQL server (default TIERLESS_PG_DSN)")
    p.add_argument("--dir", type=Path, default=ROOT / ".soak", help="run directories go here")
    p.add_argument("--json", type=Path, default=None, help="write every run's ledger here")
    return p


@contextmanager
def pg_schema(dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards."""
    try:
        import psycopg
    except ImportError as exc:
        raise DemoError("the postgres extra (psycopg) is not installed") from exc
    schema = f"soak_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise DemoError(f"PostgreSQL at {dsn} is not available: {exc}") from exc
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in dsn else "?"
        try:
            yield f"{dsn}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run_one(args: argparse.Namespace, store: str, db: str) -> dict[str, Any]:
    run_dir = args.dir / store
    ledger = run_dir.with_suffix(".ledger.json")
    options = SoakOptions(
        demo=Options(
            seconds=args.seconds,
            run_dir=run_dir,
            port=free_port(),
            progress_s=10.0,
            summary_json=ledger,
            mqtt=True,
        ),
        store=db,
        seed=args.seed,
        outage_max_s=args.outage_max_s,
    )
    soak = Soak(options)
    print(f"== soak on {store} ==", flush=True)
    code = soak.run()
    out: dict[str, Any] = {"store": store, "exit": code, "faults": soak.faults()}
    try:
        out["ledger"] = json.loads(ledger.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        out["ledger"] = None
    print(f"faults: {json.dumps(out['faults'])}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.seconds < 20:
        print("soak: --seconds must be at least 20", file=sys.stderr)
        return 2
    if not os.environ.get("TIERLESS_SOAK_ALLOW_NO_MQTT"):
        from demo.mqtt import find_mosquitto

        if find_mosquitto() is None:
            print("soak: needs mosquitto (apt install mosquitto)", file=sys.stderr)
            return 3
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    runs = []
    try:
        for store in stores:
            if store == "sqlite":
                runs.append(run_one(args, store, "sqlite"))
            else:
                with pg_schema(args.pg_dsn) as dsn:
                    runs.append(run_one(args, store, dsn))
    except DemoError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 3
    finally:
        if args.json is not None:
            args.json.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
