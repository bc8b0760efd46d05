"""The golden corpus (tests/corpus/README.md): every case of every parser, one parametrised test
per parser. A case states its input's source; this file only runs them."""

from __future__ import annotations

import dataclasses
import enum
import math
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.sources.mqtt.mapping import Mapper, MqttRule, compile_rule
from agent.sources.mqtt.presets import PRESETS
from firmware_bridge.ascii_protocol import AnswerParser, AsciiConfig, compile_spec
from firmware_bridge.errors import DeviceError, UnexpectedUnitError, UnparsableAnswerError
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.mcu_frames import decode_body
from firmware_bridge.modbus_config import ModbusConfig, resolve
from wire.models import Quality

HERE = Path(__file__).parent
NOW = 1_800_000_000_000
QUALITY = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}
TAGS = ("site", "area", "process", "medium")


def cases(parser: str) -> list[Any]:
    out = []
    for path in sorted((HERE / parser).glob("*.toml")):
        case = tomllib.loads(path.read_text(encoding="utf-8"))
        out.append(pytest.param(case, (HERE / parser / case["input"]).read_bytes(), id=path.stem))
    return out


def check_provenance(case: dict[str, Any]) -> None:
    assert case["source"].strip(), "every input names its source"
    assert case["how"] in ("quoted", "written")


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(("case", "data"), cases("mqtt"))
def test_mqtt_corpus(case: dict[str, Any], data: bytes) -> None:
    check_provenance(case)
    rules = [compile_rule(msgspec.convert(r, MqttRule), PRESETS) for r in case["rules"]]
    out = Mapper(rules).map(case["topic"], data, now_ms=NOW)
    got = [
        {
            "metric": k.metric,
            "unit": k.unit,
            "value": v,
            "quality": q,
            **{t: getattr(k, t) for t in TAGS if getattr(k, t)},
        }
        for k, v, q, _ts in out.readings
    ]
    want = [
        {**r, "value": approx(r["value"]), "quality": QUALITY[r["quality"]]}
        for r in case.get("readings", [])
    ]
    assert got == want
    assert [reason for reason, _ in out.problems] == case.get("problems", [])


@pytest.mark.parametrize(("case", "data"), cases("ascii"))
def test_ascii_corpus(case: dict[str, Any], data: bytes) -> None:
    check_provenance(case)
    config = msgspec.convert({"port": {"path": "/dev/null"}, **case["config"]}, AsciiConfig)
    parser = AnswerParser(compile_spec(config))
    lines = data.decode(config.encoding).split("\r\n" if b"\r\n" in data else "\n")
    lines = [line for line in lines if line]
    assert len(lines) == len(case["lines"]), "one expectation per input line"
    for line, want in zip(lines, case["lines"], strict=True):
        try:
            answer = parser.parse(line)
        except UnexpectedUnitError:
            assert want.get("refused") == "bad_unit", line
            continue
        except UnparsableAnswerError:
            assert want.get("refused") == "unparsable", line
            continue
        except DeviceError:
            assert want.get("refused") == "device_error", line
            continue
        assert "refused" not in want, line
        got = []
        problems = answer.problems or (None,) * len(answer.values)
        for (spec, value, unit), problem in zip(answer.values, problems, strict=True):
            quality = answer.quality if value is not None and problem is None else Quality.BAD
            got.append([spec.metric, 0.0 if value is None else value, unit, quality])
        assert got == [[m, approx(v), u, QUALITY[q]] for m, v, u, q in want.get("values", [])], line
        if "event" in want:
            assert dict(answer.attrs or ()) == want["event"], line


def registers(text: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        address = int(line[0], 0)
        for i, word in enumerate(line[1:]):
            out[address + i] = int(word, 16)
    return out


@pytest.mark.parametrize(("case", "data"), cases("modbus"))
def test_modbus_corpus(case: dict[str, Any], data: bytes) -> None:
    check_provenance(case)
    device = {"name": "d", "unit_id": 1, **case["device"]}
    config = msgspec.convert({"port": {"path": "/dev/null"}, "devices": [device]}, ModbusConfig)
    (plan,) = resolve(config)
    regs = registers(data.decode())
    got = []
    for req in plan.requests:
        words = [regs.get(a, 0) for a in range(req.address, req.address + req.count)]
        for point, value in req.decode(words):
            problem = point.problem(value)
            got.append(
                {
                    "metric": point.metric,
                    "unit": point.unit,
                    "value": "nan" if math.isnan(value) else value,
                    "quality": "good" if problem is None else "bad",
                    **({"problem": problem} if problem else {}),
                }
            )
    want = [
        {**r, "value": r["value"] if isinstance(r["value"], str) else approx(r["value"])}
        for r in case["readings"]
    ]
    assert sorted(got, key=lambda r: r["metric"]) == sorted(want, key=lambda r: r["metric"])


def _frames(decoder: FrameDecoder, chunks: list[bytes]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        for item in decoder.feed(chunk):
            if not isinstance(item, bytes):
                out.append({"damaged": True})
                continue
            msg = decode_body(item)
            fields = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
            out.append(
                {
                    "type": type(msg).__name__,
                    **{k: int(v) if isinstance(v, enum.IntEnum) else v for k, v in fields.items()},
                }
            )
    return out


@pytest.mark.parametrize(("case", "data"), cases("mcu"))
def test_mcu_corpus(case: dict[str, Any], data: bytes) -> None:
    check_provenance(case)
    wire = b"".join(bytes.fromhex(line.split("#", 1)[0]) for line in data.decode().splitlines())
    want = case["frames"]
    assert _frames(FrameDecoder(), [wire]) == want
    assert _frames(FrameDecoder(), [wire[i : i + 1] for i in range(len(wire))]) == want
