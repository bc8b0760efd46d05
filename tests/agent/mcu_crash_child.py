"""Run by test_e2e_serial: the real agent runtime with one MCU source and no reachable receiver.

argv: config path, mode, watermarks.
- mode "stall": groups are committed to the buffer but never marked committed, so no delivery is
  acknowledged to the MCU: the process stays exactly between a buffer commit and its ack, where
  the test kills it (SIGKILL). "run": the agent as it is.
- watermarks "buffer": what `build_source` gives the MCU source (`BufferWatermarks`); "file":
  the stand-alone `FileWatermarks` beside the buffer, to show the window it leaves.
Prints the number of readings in each committed group.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.config import McuSourceConfig, load_config
from agent.ingest import Group
from agent.runtime import Agent
from agent.sources.mcu import McuSource
from agent.watermarks import FileWatermarks


class CrashAgent(Agent):
    stall = False
    file_watermarks = False

    def _build(self, kernel_boot_id: str) -> None:
        super()._build(kernel_boot_id)
        if self.file_watermarks:
            (source,) = self.config.sources
            assert isinstance(source, McuSourceConfig)
            marks = FileWatermarks(Path(self.config.buffer.path).with_suffix(".marks.json"))
            self.sources = [McuSource(source, clock=self.clock, watermarks=marks)]
        mark_committed = self.ingest.mark_committed

        def mark(group: Group) -> None:
            if group.rows:
                print(len(group.rows), flush=True)
            if not self.stall:
                mark_committed(group)

        self.ingest.mark_committed = mark  # type: ignore[method-assign]


def main() -> None:
    config_path, mode, watermarks = sys.argv[1:4]
    agent = CrashAgent(load_config(config_path))
    agent.stall = mode == "stall"
    agent.file_watermarks = watermarks == "file"
    asyncio.run(agent.run())


if __name__ == "__main__":
    main()
