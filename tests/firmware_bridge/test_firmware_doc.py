"""docs/firmware-protocol.md's test vectors are the code's: the doc cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from firmware_bridge.framing import FrameDecoder
from firmware_bridge.mcu_frames import decode_body
from firmware_bridge.mcu_vectors import VECTORS, render, wire_bytes

DOC = Path(__file__).resolve().parents[2] / "docs" / "firmware-protocol.md"


def doc_vectors() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- vectors:begin -->\s*```\n(.*?)```\s*<!-- vectors:end -->", text, re.S)
    assert block, "vector block markers missing from the document"
    out = {}
    for line in block.group(1).strip().splitlines():
        name, hexes = line.split(":", 1)
        out[name.strip()] = bytes.fromhex(hexes)
    return out


def test_doc_lists_every_vector_exactly_as_encoded() -> None:
    found = doc_vectors()
    assert list(found) == [name for name, _ in VECTORS]
    for name, msg in VECTORS:
        assert found[name] == wire_bytes(msg), name


def test_doc_vectors_decode_to_their_messages() -> None:
    for name, msg in VECTORS:
        (body,) = FrameDecoder().feed(doc_vectors()[name])
        assert isinstance(body, bytes)
        assert decode_body(body) == msg


def test_render_matches_doc_block() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render() in text


def test_doc_worked_example_matches() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "03 11 07 01 01 02 02 01 01 03 df 8a" in text
    assert wire_bytes(dict(VECTORS)["ack"]).hex(" ") == "00 03 11 07 01 01 02 02 01 01 03 df 8a 00"
