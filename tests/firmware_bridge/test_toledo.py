"""Mettler Toledo standard continuous output: frames from the manuals' layout, whole and one byte
at a time, with their checksum and the decimal point of status word A; and the A&D preset's
lines from the manuals' examples."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.ascii_protocol import AnswerParser, AsciiConfig, compile_spec
from firmware_bridge.errors import DeviceError, UnparsableAnswerError
from firmware_bridge.sim.scales import toledo_frame
from firmware_bridge.toledo import BadFrame, ToledoFramer, checksum, decode
from wire.models import Quality


def feed_whole(data: bytes) -> list[str | BadFrame]:
    return ToledoFramer().feed(data)


def feed_bytewise(data: bytes) -> list[str | BadFrame]:
    framer = ToledoFramer()
    out: list[str | BadFrame] = []
    for b in data:
        out += framer.feed(bytes([b]))
    return out


# (frame as the terminal sends it, canonical line); the frames are laid out by hand from the
# manual's tables, not by the simulator, so the two check each other.
VECTORS = [
    # SWA 0x32: bit 5, increment x2 (bits 4-3 = 10), code 2: no decimal point; SWB 0x30: kg
    (bytes([2, 0x32, 0x30, 0x20]) + b"012345000000\r", "G S 12345 kg 0"),
    # code 4 (0.XX), net (SWB bit 0), kg (bit 4): 123.45 kg net, tare 10.00
    (bytes([2, 0x2C, 0x31, 0x20]) + b"012345001000\r", "N S 123.45 kg 10.00"),
    # code 1 (X0): displayed 1234 -> 12340; motion (bit 3); lb (bit 4 clear)
    (bytes([2, 0x29, 0x28, 0x20]) + b"001234000000\r", "G D 12340 lb 0"),
    # code 3 (0.X), negative (bit 1), t (SWC code 2)
    (bytes([2, 0x2B, 0x32, 0x22]) + b"000005000000\r", "G S -0.5 t 0.0"),
    # out of range (SWB bit 2)
    (bytes([2, 0x2A, 0x34, 0x20]) + b"999999000000\r", "G O 999999 kg 0"),
]


@pytest.mark.parametrize(("body", "line"), VECTORS)
@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_vectors(body: bytes, line: str, feed) -> None:
    frame = body + bytes([checksum(body)])
    assert (sum(frame) & 0x7F) == 0  # the manual's rule: the checksum zeroes the 7-bit sum
    assert feed(frame) == [line]
    assert feed(b"\x00\xffnoise" + frame + frame[:5]) == [line]


def test_simulator_frames_decode_to_what_it_was_told() -> None:
    frame = toledo_frame(23_450.0, tare=11_200.0, decimals=0, net=True)
    assert feed_whole(frame) == ["N S 23450 kg 11200"]
    frame = toledo_frame(1.25, decimals=2, stable=False, unit="t")
    assert feed_whole(frame) == ["G D 1.25 t 0.00"]


def test_every_frame_with_a_corrupted_checksum_is_refused() -> None:
    """The field report: 29 of 29 frames with a corrupted checksum were stored."""
    framer = ToledoFramer()
    out: list[str | BadFrame] = []
    for n in range(29):
        good = toledo_frame(1000.0 + n)
        out += framer.feed(good[:-1] + bytes([(good[-1] + 1 + n % 7) & 0x7F]))
    assert len(out) == 29
    assert all(isinstance(x, BadFrame) and "checksum" in x.reason for x in out)
    assert framer.stats.bad_checksum == 29
    # and the next good frame is taken
    assert framer.feed(toledo_frame(5.0)) == ["G S 5 kg 0"]


def test_status_bytes_without_their_fixed_bits_are_refused() -> None:
    body = bytes([2, 0x12, 0x30, 0x20]) + b"000001000000\r"  # SWA bit 5 clear
    assert isinstance(decode(body), BadFrame)
    body = bytes([2, 0x32, 0x30, 0x20]) + b"0000x1000000\r"
    assert isinstance(decode(body), BadFrame)


def test_frames_without_checksum_when_configured_so() -> None:
    frame = toledo_frame(42.0, checksum=False)
    assert ToledoFramer(checksum=False).feed(frame * 2) == ["G S 42 kg 0"] * 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_lines_or_bad_frames_never_an_exception(data: bytes) -> None:
    framer = ToledoFramer()
    for item in framer.feed(data):
        assert isinstance(item, str | BadFrame)
    assert framer.partial < 18


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_the_scale_presets_raise_only_their_own_errors(line: str) -> None:
    for preset in ("toledo-continuous", "and"):
        raw = {"port": {"path": "/dev/null"}, "preset": preset, "mode": "streaming"}
        parser = AnswerParser(compile_spec(msgspec.convert(raw, AsciiConfig)))
        with contextlib.suppress(UnparsableAnswerError, DeviceError):
            parser.parse(line)


@pytest.mark.parametrize(
    ("line", "value", "quality", "unit"),
    [
        ("ST,+00123.45  g", 123.45, Quality.GOOD, "g"),
        ("US,-0000012.3 kg", -12.3, Quality.UNCERTAIN, "kg"),
        ("OL,+999999.9  g", 999999.9, Quality.BAD, "g"),
        ("ST,NT,+0012.34kg", 12.34, Quality.GOOD, "kg"),
        ("QT,+00012345 PC", 12345.0, Quality.BAD, "{pcs}"),
    ],
)
def test_and_lines_from_the_manuals(line: str, value: float, quality: Quality, unit: str) -> None:
    raw = {"port": {"path": "/dev/null"}, "preset": "and", "mode": "streaming"}
    answer = AnswerParser(compile_spec(msgspec.convert(raw, AsciiConfig))).parse(line)
    ((_, got, got_unit),) = answer.values
    assert got == pytest.approx(value)
    assert (answer.quality, got_unit) == (quality, unit)
