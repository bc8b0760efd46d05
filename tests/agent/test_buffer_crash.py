"""Crash consistency of the buffer and its outbox: kill -9 at random moments, many times.

After every kill the next process reopens the same file. At the end everything left is drained.
Every value the killed processes reported as committed must be at the fake receiver exactly once,
the chain must never fork, and values must be contiguous (nothing lost, nothing twice). kill -9
keeps the page cache, so this checks the transaction design, not the disk: power loss adds the
fsync question, which synchronous=FULL answers (see agent/buffer.py).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from tests.agent.crash_child import drain_and_check

CYCLES = int(os.environ.get("TIERLESS_CHAOS_CYCLES", "10"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_and_kill(db, cloud, rng) -> int:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.agent.crash_child", str(db), str(cloud)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            first = child.stdout.readline()  # wait until it is working, then strike at random
            assert first, "child died before committing anything"
            time.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
            out = first + child.stdout.read()
        finally:
            child.kill()
    return int(out.split()[-1])


def test_kill_9_never_loses_a_commit_nor_forks_the_chain(tmp_path):
    rng = random.Random(int(os.environ.get("TIERLESS_CHAOS_SEED", "4")))
    db, cloud_path = tmp_path / "buffer.db", tmp_path / "cloud.db"
    reported = 0
    for _ in range(CYCLES):
        reported = max(reported, run_and_kill(db, cloud_path, rng))
    drain_and_check(db, cloud_path, reported)
