"""Line-based ASCII instruments (scales, weighbridge indicators, analysers): configuration,
presets and the answer parser. Sans-I/O: bytes in, lines out; lines in, values out.

An instrument answers (polled) or talks (streaming) in lines. A regular expression with named
groups picks the values out of a line; `values` maps groups to series, an optional status group
maps to quality (stable / unstable / overload …), an optional checksum group is verified, and an
optional `event` turns an answer into a `wire.models.Event` (a weighbridge ticket) whose
attributes are groups.

Invariants:
- a line never grows past `max_line` bytes: longer runs are dropped up to the next line end and
  counted (`LineStats.oversized`), so a babbling instrument cannot exhaust memory;
- `AnswerParser.parse` raises only UnparsableAnswerError (the line matches neither the pattern nor
  the error pattern, or its checksum is wrong) and DeviceError (the instrument answered with an
  error line); both are counted by the source, never fatal;
- a matched answer without a value (MT-SICS `S +`, overload) still yields a reading: value 0.0,
  quality from the status (BAD), so the gap is explicit;
- every value is checked against its unit and range (wire.units): a unit the answer names that
  is not in the value's `units` map raises UnexpectedUnitError (the line is refused: a bit error
  never makes a new series); a number outside the value's range is kept with the reason
  `out_of_range` in `Answer.problems`, and the source stores it BAD.

Presets (`preset = "mt-sics"`) fill the pattern, command, status map and error pattern of a
publicly documented protocol; explicit settings win over the preset's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from firmware_bridge.errors import (
    ConfigError,
    DeviceError,
    UnexpectedUnitError,
    UnparsableAnswerError,
)
from firmware_bridge.port_config import PortConfig
from firmware_bridge.tickets import TicketConfig
from wire.models import AttrValue, Quality
from wire.units import (
    UNITS,
    Kind,
    Limits,
    default_kind,
    kind_problem,
    limits_for,
    range_problem,
    unit_problem,
)

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Tag = Annotated[str, msgspec.Meta(max_length=128)]
QualityName = Literal["good", "uncertain", "bad"]
_QUALITY = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}


class AsciiValue(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    group: _Name
    metric: _Name
    unit: _Tag = ""  # a UCUM code from wire.units.UNITS
    unit_group: str = ""  # take the unit from this group of the answer instead
    # With unit_group: the unit as the instrument writes it -> its UCUM code. Empty: the answer
    # must write a UCUM code itself. Any other token refuses the line.
    units: dict[str, str] = msgspec.field(default_factory=dict)
    kind: Kind | None = None  # None: cumulative in a counter unit, gauge otherwise
    min: float | None = None  # plausible range, within the unit's physical limits
    max: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""


class ChecksumConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Two hex digits in `group`, over the line's characters from `start` up to the group."""

    algorithm: Literal["xor8", "sum8"]
    group: _Name
    start: Annotated[int, msgspec.Meta(ge=0)] = 0


class EventConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Emit each answer as an event; `attrs` maps attribute name → group."""

    kind: _Name
    attrs: dict[str, str]


class AsciiConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: _Name = "ascii"
    port: PortConfig
    # Tags for every value that does not set its own (the preset's values too).
    site: _Tag = ""
    area: _Tag = ""
    process: _Tag = ""
    medium: _Tag = ""
    preset: Literal["mt-sics", "toledo-continuous", "and"] | None = None
    mode: Literal["polled", "streaming"] = "polled"
    command: str = ""  # polled: sent every poll; streaming: sent once after opening ("": none)
    command_end: str = "\r\n"
    line_end: Literal["lf", "cr"] = "lf"  # a trailing CR before LF is stripped either way
    encoding: Literal["ascii", "latin-1", "utf-8"] = "latin-1"
    pattern: str = ""
    error_pattern: str = ""  # lines the instrument sends instead of a value (e.g. "ES")
    values: list[AsciiValue] = msgspec.field(default_factory=list)
    status_group: str = ""
    status_map: dict[str, QualityName] = msgspec.field(default_factory=dict)
    unknown_status: QualityName = "bad"
    checksum: ChecksumConfig | None = None
    event: EventConfig | None = None
    ticket: TicketConfig | None = None  # weighings from the weight: firmware_bridge.tickets
    poll_interval_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    answer_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    silence_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # streaming: no line at all
    # streaming, after silence_timeout_ms without a value: "gap" reports the source down (a scale
    # that streams continuously); "check_port" only checks the port (a ticket printer, silent
    # between trucks)
    on_silence: Literal["gap", "check_port"] = "gap"
    lost_after_timeouts: Annotated[int, msgspec.Meta(ge=1)] = 3  # then check the device is there
    # polled: after a poll timed out, its answer may still come this long after the request; the
    # next request waits until then, so a late answer is dropped and never taken for a later poll
    late_answer_ms: Annotated[int, msgspec.Meta(ge=0)] = 3000
    max_line: Annotated[int, msgspec.Meta(ge=8, le=65536)] = 256
    reopen_initial_ms: Annotated[int, msgspec.Meta(ge=1)] = 500
    reopen_max_ms: Annotated[int, msgspec.Meta(ge=1)] = 30_000


# Mettler Toledo MT-SICS level 0 (Reference Manual "MT-SICS Interface Commands", e.g. 11780711
# for New Classic balances): `S` / `SI` answer "S S     100.00 g" (stable) or "S D …" (dynamic,
# SI only); "S I" = not executable (busy), "S +" = overload, "S -" = underload; "ES", "ET", "EL"
# are syntax, transmission and logical errors. `SIR` repeats SI continuously (streaming).
# Commands and answers end with CR LF. Units as the balance writes them (the manual's list of
# weight units for `U`/`PWR`): g, kg, mg, t, ct, lb, oz, ozt; anything else is a damaged line.
MT_SICS_UNITS = {
    "g": "g",
    "kg": "kg",
    "mg": "mg",
    "t": "t",
    "ct": "[car_m]",
    "lb": "[lb_av]",
    "oz": "[oz_av]",
    "ozt": "[oz_tr]",
}
# Units the Toledo continuous framer names (`firmware_bridge.toledo`; "custom" is none of ours, so
# a custom unit is refused like a bit error).
TOLEDO_UNITS = {
    "kg": "kg",
    "lb": "[lb_av]",
    "g": "g",
    "t": "t",
    "oz": "[oz_av]",
    "ozt": "[oz_tr]",
    "dwt": "[pwt_tr]",
    "ton_long": "[lton_av]",
}
# A&D's unit field (instruction manuals' "Data format" tables): PC is a count in counting mode.
AND_UNITS = {**MT_SICS_UNITS, "PC": "{pcs}", "%": "%", "dwt": "[pwt_tr]"}
PRESETS: dict[str, dict[str, object]] = {
    "mt-sics": {
        "pattern": (
            r"^S\s+(?P<status>[SDI+\-])"
            r"(?:\s+(?P<weight>[-+]?\d+(?:\.\d*)?)\s+(?P<unit>\S+))?\s*$"
        ),
        "error_pattern": r"^E[STL]\s*$",
        "status_group": "status",
        "status_map": {"S": "good", "D": "uncertain", "I": "bad", "+": "bad", "-": "bad"},
        "command": {"polled": "SI", "streaming": "SIR"},
        "values": [
            AsciiValue(group="weight", metric="weight", unit_group="unit", units=MT_SICS_UNITS)
        ],
    },
    # Mettler Toledo standard continuous output (terminal technical manuals, e.g. IND560/IND780
    # appendix "Continuous Output"): binary status bytes, so `firmware_bridge.toledo` checks the
    # checksum, applies the decimal point of status word A and hands this pattern a canonical
    # line "<G|N> <S|D|O> <weight> <unit> <tare>". Streaming only; nothing to send.
    "toledo-continuous": {
        "pattern": (
            r"^(?P<mode>[GN]) (?P<status>[SDO]) (?P<weight>-?\d+(?:\.\d+)?) (?P<unit>\S+)"
            r" (?P<tare>\d+(?:\.\d+)?)$"
        ),
        "status_group": "status",
        "status_map": {"S": "good", "D": "uncertain", "O": "bad"},
        "command": {"polled": "", "streaming": ""},
        "values": [
            AsciiValue(group="weight", metric="weight", unit_group="unit", units=TOLEDO_UNITS),
            AsciiValue(group="tare", metric="tare", unit_group="unit", units=TOLEDO_UNITS),
        ],
    },
    # A&D standard data format (A&D instruction manuals, e.g. EK-L series 9-2 "Data format";
    # indicators such as the AD-4404 add a second header GS/NT/TR): "ST,+00123.45  g" stable,
    # "US," unstable, "OL," out of range, "QT," a count (not a weight: BAD); CR LF. Command `Q`
    # asks for the present value (polled); stream mode is set on the instrument.
    "and": {
        "pattern": (
            r"^(?P<status>ST|US|OL|QT),(?:(?P<mode>GS|NT|TR),)?"
            r"(?:(?P<weight>[-+]\d*\.?\d+)|[-+ ][ .]*)\s*(?P<unit>[A-Za-z%]{1,3})\s*$"
        ),
        "status_group": "status",
        "status_map": {"ST": "good", "US": "uncertain", "OL": "bad", "QT": "bad"},
        "command": {"polled": "Q", "streaming": ""},
        "values": [AsciiValue(group="weight", metric="weight", unit_group="unit", units=AND_UNITS)],
    },
}


@dataclass(frozen=True, slots=True)
class AsciiSpec:
    """A config with its preset applied and its expressions compiled."""

    config: AsciiConfig
    command: str
    pattern: re.Pattern[str]
    error_pattern: re.Pattern[str] | None
    values: tuple[AsciiValue, ...]
    status_group: str
    status_map: dict[str, QualityName]
    limits: tuple[Limits, ...] = ()  # per value, as `values`


def compile_spec(config: AsciiConfig, *, where: str | None = None) -> AsciiSpec:
    """Apply the preset and check everything at once; ConfigError lists every problem, each
    starting with its key path below `where` (default `ascii '<name>'`; the agent passes
    `sources[i]`)."""
    preset = PRESETS.get(config.preset or "", {})
    problems: list[str] = []
    where = where if where is not None else f"ascii {config.name!r}"
    command = config.command
    if not command and "command" in preset:
        commands = preset["command"]
        command = commands[config.mode] if isinstance(commands, dict) else ""
    pattern_text = config.pattern or str(preset.get("pattern", ""))
    error_text = config.error_pattern or str(preset.get("error_pattern", ""))
    preset_values = preset.get("values", [])
    values = tuple(config.values) or tuple(preset_values if isinstance(preset_values, list) else [])
    status_group = config.status_group or str(preset.get("status_group", ""))
    preset_map = preset.get("status_map", {})
    status_map = dict(config.status_map) or dict(preset_map if isinstance(preset_map, dict) else {})
    if config.mode == "polled" and not command:
        problems.append(f"{where}.command: polled mode needs a command (or a preset)")
    pattern = _compile(pattern_text, f"{where}.pattern", problems)
    error_pattern = _compile(error_text, f"{where}.error_pattern", problems) if error_text else None
    if not pattern_text:
        problems.append(f"{where}.pattern: no pattern (set `pattern` or a preset)")
    if not values and config.event is None:
        problems.append(f"{where}.values: neither values nor an event to emit")
    groups = set(pattern.groupindex) if pattern is not None else set()
    # (key path, group) for every group the config names
    needed = [(f"values[{k}].group", v.group) for k, v in enumerate(config.values)]
    needed += [
        (f"values[{k}].unit_group", v.unit_group)
        for k, v in enumerate(config.values)
        if v.unit_group
    ]
    if not config.values:  # the preset's values
        needed += [("preset", v.group) for v in values]
        needed += [("preset", v.unit_group) for v in values if v.unit_group]
    if status_group:
        needed.append(("status_group" if config.status_group else "preset", status_group))
    if config.checksum is not None:
        needed.append(("checksum.group", config.checksum.group))
    if config.event is not None:
        needed += [(f"event.attrs.{name}", g) for name, g in config.event.attrs.items()]
    for key, group in needed:
        if pattern is not None and group not in groups:
            problems.append(f"{where}.{key}: pattern has no group named {group!r}")
    metrics = [v.metric for v in values]
    if len(set(metrics)) != len(metrics):
        problems.append(f"{where}.values: a metric appears twice in values")
    values = tuple(_with_tags(v, config) for v in values)
    for k, v in enumerate(values):
        at = f"{where}.values[{k}]" if config.values else f"{where}.preset ({v.metric})"
        problems += [f"{at}.{key}: {problem}" for key, problem in _value_problems(v)]
    if problems or pattern is None:
        raise ConfigError(problems)
    limits = tuple(limits_for(v.unit, _kind(v), v.min, v.max) for v in values)
    return AsciiSpec(
        config, command, pattern, error_pattern, values, status_group, status_map, limits
    )


def _kind(v: AsciiValue) -> Kind:
    return v.kind or default_kind(v.unit)


def _with_tags(v: AsciiValue, config: AsciiConfig) -> AsciiValue:
    """The value with the source's tags where it sets none of its own."""
    tags = {
        name: getattr(config, name)
        for name in ("site", "area", "process", "medium")
        if getattr(config, name) and not getattr(v, name)
    }
    return msgspec.structs.replace(v, **tags) if tags else v


def _value_problems(v: AsciiValue) -> list[tuple[str, str]]:
    out = []
    units = list(v.units.values()) if v.unit_group else [v.unit]
    for unit in units:
        problem = unit_problem(unit)
        if problem is not None:
            out.append(("units" if v.unit_group else "unit", problem))
        else:
            problem = kind_problem(v.metric, unit, v.kind or default_kind(unit))
            if problem is not None:
                out.append(("kind", problem))
    if v.units and not v.unit_group:
        out.append(("units", "only used with unit_group"))
    problem = range_problem(v.unit, v.min, v.max)
    if problem is not None:
        out.append(("min", problem))
    return out


def _compile(text: str, where: str, problems: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error as exc:
        problems.append(f"{where}: not a valid regular expression: {exc}")
        return None


@dataclass(slots=True)
class LineStats:
    lines: int = 0
    oversized: int = 0
    discarded_bytes: int = 0


class LineSplitter:
    """Bytes in, complete lines (without their end) out; bounded by `max_line`."""

    def __init__(self, *, end: bytes = b"\n", max_line: int = 256) -> None:
        self._end = end
        self._max = max_line
        self._buf = bytearray()
        self._skipping = False
        self.stats = LineStats()

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        buf += data
        start = 0
        while (i := buf.find(self._end, start)) != -1:
            if self._skipping:
                self._skipping = False
                self.stats.discarded_bytes += i - start
            else:
                line = bytes(buf[start:i]).strip(b"\r\n")
                if len(line) > self._max:
                    self.stats.oversized += 1
                    self.stats.discarded_bytes += len(line)
                else:
                    self.stats.lines += 1
                    out.append(line)
            start = i + len(self._end)
        del buf[:start]
        if len(buf) > self._max:
            if not self._skipping:
                self.stats.oversized += 1
            self._skipping = True
            self.stats.discarded_bytes += len(buf)
            buf.clear()
        return out

    @property
    def partial(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._buf)

    def reset(self) -> int:
        """Forget an unfinished line (before a new request); how many bytes it had."""
        n = len(self._buf)
        self._buf.clear()
        self._skipping = False
        return n


@dataclass(frozen=True, slots=True)
class Answer:
    """One parsed line: (value spec, value or None, unit) per value, the status and its quality,
    and the event attributes when an event is configured."""

    values: tuple[tuple[AsciiValue, float | None, str], ...]
    status: str
    quality: Quality
    attrs: tuple[tuple[str, AttrValue], ...] | None
    problems: tuple[str | None, ...] = ()  # per value: why it cannot be GOOD (out_of_range)


class AnswerParser:
    def __init__(self, spec: AsciiSpec) -> None:
        self.spec = spec

    def parse(self, line: str) -> Answer:
        spec = self.spec
        m = spec.pattern.match(line)
        if m is None:
            if spec.error_pattern is not None and spec.error_pattern.match(line):
                raise DeviceError(f"instrument error answer {line.strip()!r}")
            raise UnparsableAnswerError(f"unparsable answer {line[:60]!r}")
        cs = spec.config.checksum
        if cs is not None:
            _verify_checksum(line, m, cs)
        status = (m.group(spec.status_group) or "") if spec.status_group else ""
        if spec.status_group:
            name = spec.status_map.get(status, spec.config.unknown_status)
            quality = _QUALITY[name]
        else:
            quality = Quality.GOOD
        values: list[tuple[AsciiValue, float | None, str]] = []
        problems: list[str | None] = []
        for k, v in enumerate(spec.values):
            text = m.group(v.group)
            unit = _unit(m, v) if v.unit_group else v.unit
            if text is None:
                values.append((v, None, unit))
                problems.append(None)
                continue
            try:
                number = float(text) * v.scale + v.offset
            except ValueError as exc:
                raise UnparsableAnswerError(f"{v.group}: {text!r} is not a number") from exc
            values.append((v, number, unit))
            limits = spec.limits[k] if spec.limits else Limits()
            problems.append(limits.problem(number))
        attrs = None
        if spec.config.event is not None:
            attrs = tuple(
                (name, _attr(m.group(group) or ""))
                for name, group in spec.config.event.attrs.items()
            )
        return Answer(tuple(values), status, quality, attrs, tuple(problems))


def _unit(m: re.Match[str], v: AsciiValue) -> str:
    """The UCUM code of the unit the answer names ("" when it names none, as in `S +`)."""
    token = (m.group(v.unit_group) or "").strip()
    if not token:
        return ""
    unit = v.units.get(token) if v.units else (token if token in UNITS else None)
    if unit is None:
        raise UnexpectedUnitError(f"{v.unit_group}: unit {token[:16]!r} is not one {v.metric} has")
    return unit


def _attr(text: str) -> AttrValue:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _verify_checksum(line: str, m: re.Match[str], cs: ChecksumConfig) -> None:
    given_text = m.group(cs.group)
    try:
        given = int(given_text or "", 16)
    except ValueError as exc:
        raise UnparsableAnswerError(f"checksum {given_text!r} is not hex") from exc
    data = line[cs.start : m.start(cs.group)].encode("latin-1", errors="replace")
    if cs.algorithm == "xor8":
        want = 0
        for b in data:
            want ^= b
    else:
        want = sum(data) & 0xFF
    if want != given:
        raise UnparsableAnswerError(f"checksum {given:02X}, computed {want:02X}")
