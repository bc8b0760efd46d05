"""The MCU watermark stores: staged through the ingest, or kept in a file of their own."""

from __future__ import annotations

from pathlib import Path

from agent.watermarks import BufferWatermarks, FileWatermarks
from firmware_bridge.mcu_frames import McuPosition
from tests.agent.test_ingest import make


def test_buffer_watermarks_stage_through_the_ingest():
    ingest = make()
    marks = BufferWatermarks({7: (1, 3)}, ingest)
    assert marks.load(7) == (1, 3)
    marks.stage(7, McuPosition(1, 9))
    assert marks.load(7) == (1, 3)  # staged is not committed
    assert ingest.take().positions == {7: (1, 9)}  # ... but goes with the next group
    marks.save(7, McuPosition(1, 9))  # the source, after the commit
    assert marks.load(7) == (1, 9)
    marks.forget(7)
    assert marks.load(7) is None
    assert ingest.take().positions == {7: None}  # the forget is committed with the next group


def test_file_watermarks_survive_a_restart(tmp_path: Path) -> None:
    marks = FileWatermarks(tmp_path / "wm.json")
    assert marks.load(5) is None
    marks.save(5, McuPosition(2, 40))
    marks.save(6, McuPosition(1, 1))
    again = FileWatermarks(tmp_path / "wm.json")
    assert again.load(5) == (2, 40)
    again.forget(6)
    assert FileWatermarks(tmp_path / "wm.json").load(6) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert FileWatermarks(tmp_path / "bad.json").load(5) is None  # damaged: start without
