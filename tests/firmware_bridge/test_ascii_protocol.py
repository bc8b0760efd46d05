from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.ascii_protocol import (
    AnswerParser,
    AsciiConfig,
    LineSplitter,
    compile_spec,
)
from firmware_bridge.errors import (
    ConfigError,
    DeviceError,
    UnexpectedUnitError,
    UnparsableAnswerError,
)
from wire.models import Quality


def cfg(**kw: object) -> AsciiConfig:
    return msgspec.convert({"port": {"path": "/dev/null"}, **kw}, AsciiConfig)


MT = AnswerParser(compile_spec(cfg(preset="mt-sics")))


@pytest.mark.parametrize(
    ("line", "value", "unit", "quality"),
    [
        ("S S     100.00 g", 100.0, "g", Quality.GOOD),  # the manual's example
        ("S D      99.98 g", 99.98, "g", Quality.UNCERTAIN),  # SI while still moving
        ("S S    -12.5 kg", -12.5, "kg", Quality.GOOD),
        ("S +", None, "", Quality.BAD),  # overload
        ("S -", None, "", Quality.BAD),  # underload
        ("S I", None, "", Quality.BAD),  # busy, not executable
    ],
)
def test_mt_sics_answers(line: str, value: float | None, unit: str, quality: Quality) -> None:
    answer = MT.parse(line)
    ((spec, got, got_unit),) = answer.values
    assert spec.metric == "weight"
    assert got == (pytest.approx(value) if value is not None else None)
    assert got_unit == unit
    assert answer.quality == quality


@pytest.mark.parametrize("line", ["ES", "ET", "EL"])
def test_mt_sics_error_answers(line: str) -> None:
    with pytest.raises(DeviceError, match="instrument error"):
        MT.parse(line)


@pytest.mark.parametrize("line", ["", "garbage", "S X 1 g", "S S abc g", "\x00\xffS S 1 g"])
def test_unparsable_lines(line: str) -> None:
    with pytest.raises(UnparsableAnswerError):
        MT.parse(line)


def test_preset_commands_per_mode() -> None:
    assert compile_spec(cfg(preset="mt-sics")).command == "SI"
    assert compile_spec(cfg(preset="mt-sics", mode="streaming")).command == "SIR"
    assert compile_spec(cfg(preset="mt-sics", command="S")).command == "S"


TICKET = cfg(
    mode="streaming",
    pattern=(
        r"^T(?P<ticket>\d+),(?P<material>[A-Z]+),(?P<lot>[\w-]+),"
        r"(?P<net>-?\d+),(?P<status>[OM])\*(?P<cs>[0-9A-F]{2})$"
    ),
    values=[{"group": "net", "metric": "net_mass", "unit": "kg", "medium": "material"}],
    status_group="status",
    status_map={"O": "good", "M": "uncertain"},
    checksum={"algorithm": "xor8", "group": "cs"},
    event={
        "kind": "weighbridge_ticket",
        "attrs": {"ticket": "ticket", "material": "material", "lot": "lot", "net_kg": "net"},
    },
)


def xor8(text: str) -> str:
    x = 0
    for b in text.encode():
        x ^= b
    return f"{x:02X}"


def test_ticket_event_with_checksum() -> None:
    body = "T1042,GRAVEL,L-7,25340,O*"
    answer = AnswerParser(compile_spec(TICKET)).parse(body + xor8(body))
    assert answer.attrs == (
        ("ticket", 1042),
        ("material", "GRAVEL"),
        ("lot", "L-7"),
        ("net_kg", 25340),
    )
    assert answer.values[0][1] == 25340.0
    assert answer.quality == Quality.GOOD


def test_ticket_bad_checksum() -> None:
    body = "T1042,GRAVEL,L-7,25340,O*"
    bad = "00" if xor8(body) != "00" else "01"
    with pytest.raises(UnparsableAnswerError, match="checksum"):
        AnswerParser(compile_spec(TICKET)).parse(body + bad)


def test_sum8_checksum_and_start() -> None:
    spec = compile_spec(
        cfg(
            pattern=r"^\x02(?P<v>\d+)(?P<cs>[0-9A-F]{2})$",
            command="R",
            values=[{"group": "v", "metric": "v"}],
            checksum={"algorithm": "sum8", "group": "cs", "start": 1},
        )
    )
    cs = f"{sum(b'123') & 0xFF:02X}"
    assert AnswerParser(spec).parse(f"\x02123{cs}").values[0][1] == 123.0


def test_config_problems_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        compile_spec(
            cfg(
                pattern="(?P<a>\\d+",
                values=[{"group": "a", "metric": "m"}, {"group": "b", "metric": "m"}],
            )
        )
    text = str(info.value)
    assert "needs a command" in text
    assert "not a valid regular expression" in text
    assert "appears twice" in text
    with pytest.raises(ConfigError, match="no group named 'missing'"):
        compile_spec(
            cfg(command="x", pattern="(?P<a>1)", values=[{"group": "missing", "metric": "m"}])
        )


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_line_splitter(split: str) -> None:
    stream = b"S S 1 g\r\nS D 2 g\r\n\r\nS +\n" + b"x" * 300 + b"\nS S 3 g\r\npartial"
    splitter = LineSplitter(max_line=64)
    chunks = [stream] if split == "whole" else [bytes([b]) for b in stream]
    lines = [line for c in chunks for line in splitter.feed(c)]
    assert lines == [b"S S 1 g", b"S D 2 g", b"", b"S +", b"S S 3 g"]
    assert splitter.stats.oversized == 1
    assert splitter.partial == len(b"partial")
    assert splitter.reset() == 7
    assert splitter.partial == 0


def test_cr_terminated_lines() -> None:
    splitter = LineSplitter(end=b"\r")
    assert splitter.feed(b"a\rb\r") == [b"a", b"b"]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_parser_raises_only_its_own_errors(line: str) -> None:
    for parser in (MT, AnswerParser(compile_spec(TICKET))):
        with contextlib.suppress(UnparsableAnswerError, DeviceError):
            parser.parse(line)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_splitter_is_bounded(data: bytes) -> None:
    splitter = LineSplitter(max_line=32)
    for line in splitter.feed(data):
        assert len(line) <= 32
    assert splitter.partial <= 32


# -- units, ranges and tags (issue 13) ---------------------------------------------------------


@pytest.mark.parametrize("line", ["S S     100.00 {g", "S S     100.00 kG", "S D     100.00 ke"])
def test_mt_sics_a_bit_error_in_the_unit_refuses_the_line(line: str) -> None:
    """Observed: `{g`, `kG`, `ke` became new weight series. A unit the balance cannot send is a
    damaged line, never a series."""
    with pytest.raises(UnexpectedUnitError, match="unit"):
        MT.parse(line)


@pytest.mark.parametrize(
    ("token", "unit"), [("g", "g"), ("kg", "kg"), ("t", "t"), ("lb", "[lb_av]"), ("ct", "[car_m]")]
)
def test_mt_sics_units_become_ucum_codes(token: str, unit: str) -> None:
    ((_, value, got),) = MT.parse(f"S S     12.5 {token}").values
    assert (value, got) == (12.5, unit)


def test_a_value_outside_its_range_is_flagged() -> None:
    parser = AnswerParser(
        compile_spec(
            cfg(
                mode="streaming",
                pattern=r"^T=(?P<t>\S+) H=(?P<h>\S+)$",
                values=[
                    {"group": "t", "metric": "temperature", "unit": "Cel"},
                    {"group": "h", "metric": "humidity", "unit": "%"},
                ],
            )
        )
    )
    assert parser.parse("T=21.5 H=45").problems == (None, None)
    assert parser.parse("T=-273.16 H=140.5").problems == ("out_of_range", "out_of_range")


def test_source_tags_reach_the_presets_values() -> None:
    """Observed: an ASCII source could not carry tags without rewriting the preset."""
    spec = compile_spec(cfg(preset="mt-sics", site="plant-1", area="gate", medium="material"))
    (value,) = spec.values
    assert (value.site, value.area, value.process, value.medium) == (
        "plant-1",
        "gate",
        "",
        "material",
    )
    own = compile_spec(
        cfg(
            preset="mt-sics",
            area="gate",
            values=[{"group": "weight", "metric": "w", "unit": "kg", "area": "pit"}],
        )
    )
    assert own.values[0].area == "pit"  # a value's own tag wins


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"unit": "kWh"}, "'kW.h'"),
        ({"unit": "°C"}, "'Cel'"),
        ({"unit": "%", "min": 50, "max": 10}, "above max"),
        ({"unit": "kW.h", "metric": "energy_today"}, "not cumulative"),
        ({"unit": "kW.h", "kind": "resetting"}, "needs a metric ending"),
        ({"units": {"g": "g"}}, "only used with unit_group"),
    ],
)
def test_declarations_are_checked(value: dict[str, object], problem: str) -> None:
    raw = {"group": "v", "metric": "m", **value}
    with pytest.raises(ConfigError, match=problem):
        compile_spec(cfg(mode="streaming", pattern=r"^(?P<v>\S+)$", values=[raw]))
