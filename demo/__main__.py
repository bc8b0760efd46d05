"""`python -m demo [--seconds N]`: see `demo.run` for what it does, step by step.

Exit codes: 0 every device produced and nothing was lost or duplicated; 1 something was lost,
duplicated or made up, or a device produced nothing; 2 bad command line; 3 the demo could not
run (a port in use, a binary missing, a process that failed; one line says which); 130 stopped
by Ctrl-C before it could finish.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from demo.errors import DemoError

MIN_SECONDS = 5
ROOT = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m demo",
        description="Receiver + gateway + emulated devices on this machine (make demo).",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="run this long, then stop, drain and print the summary (default: until Ctrl-C)",
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=ROOT / ".demo",
        help="run directory, wiped at start (default .demo/ in the repository)",
    )
    p.add_argument("--port", type=int, default=None, help="receiver port (default: a free one)")
    p.add_argument("--progress-s", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument("--summary-json", type=Path, default=None, help="also write the summary here")
    p.add_argument("--no-mqtt", action="store_true", help="leave the MQTT sensors out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.seconds is not None and args.seconds < MIN_SECONDS:
        print(
            f"demo: --seconds must be at least {MIN_SECONDS} (every device must have time to "
            "produce something)",
            file=sys.stderr,
        )
        return 2
    if args.port is not None and not 0 < args.port < 65536:
        print("demo: --port must be 1..65535", file=sys.stderr)
        return 2
    try:
        from demo.run import Demo, Options
    except ImportError as exc:  # run with a Python that lacks the project's dependencies
        print(
            f"demo: {exc.name or exc} is not installed here: run `make demo`, which builds .venv",
            file=sys.stderr,
        )
        return 3
    options = Options(
        seconds=args.seconds,
        run_dir=args.dir,
        port=args.port,
        progress_s=max(args.progress_s, 0.5),
        summary_json=args.summary_json,
        mqtt=not args.no_mqtt,
    )
    try:
        return Demo(options).run()
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
