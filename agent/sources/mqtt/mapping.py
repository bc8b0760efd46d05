"""MQTT messages to readings: topic patterns, payload paths, timestamps. Pure: no I/O, no clock.

A rule says which topics it takes and which values each message carries:

    topic = "plant/{area}/{device}/telemetry"      # MQTT filter; {name} captures one level
    metric_template = "{device}.{metric}"           # the series' metric; {metric} is the value's
    area = "{area}"                                 # tags are templates over the captures too
    values = [{metric = "power", path = "P", unit = "W"},
              {metric = "state", path = "relay", map = {ON = 1, OFF = 0}}]

Topic levels: a literal, `+` (any one level), `#` (the rest, last only), or a level with captures,
`{device}` or `switch:{channel}` (subscribed as `+`, matched and captured here). Paths: keys
separated by `.`, `[n]` array indexes (`[-1]` the last), `*` any key or index (captured as
`{key}`); `""` is the whole payload, which then may be plain text (`21.5`, `ON`).

Invariants (kept by `Mapper.map`, checked by the tests with every bad-payload class):
- `map()` never raises for any topic and payload: every failure is a reason in `Mapped.problems`;
- every SeriesKey it returns is valid on the wire (metric 1..128 printable characters, tags at
  most 128 printable), so a hostile topic can never make a batch unencodable;
- values are finite floats, one bad value (NaN, a word, out of range) spoils only itself: a
  NaN or Infinity token, or a number beyond float range, in one field of a JSON payload is
  refused as `non_finite` for that value and the other values of the message are kept;
- every value is checked against its point's declaration (wire.units): its unit is a UCUM code
  of the closed set (checked when the rule is compiled), a number outside its plausible range is
  kept BAD with the problem `out_of_range`, and a counter's metric name says its kind;
- a timestamp is None (the agent stamps arrival time with its clock
  rules) or a payload time inside `[now - max_age, now + max_ahead]`; one outside that window,
  or unreadable, keeps the reading, stamped at arrival and flagged UNCERTAIN; while the agent's
  own clock is untrusted (`now_ms=None`) a payload time cannot be checked and is flagged
  TIME_UNTRUSTED (without an epoch, so it is never "corrected" as if it were the agent's);
- work per message is bounded: payload size, JSON depth (msgspec's limit), readings per message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from agent.errors import ConfigError
from wire.models import MAX_NAME_LEN, MAX_TS_MS, MIN_TS_MS, TIME_UNTRUSTED, Quality, SeriesKey
from wire.units import (
    COUNTER_UNITS,
    Kind,
    Limits,
    default_kind,
    kind_problem,
    limits_for,
    range_problem,
)
from wire.units import unit_problem as _unit_problem

# Reasons a message (or one value of it) is refused or flagged. Counted per reason by the source.
REASONS = (
    "unknown_topic",  # no rule takes this topic
    "bad_topic",  # the topic is not UTF-8
    "too_large",  # payload over max_payload_bytes
    "binary",  # not UTF-8 text
    "not_json",  # a rule with paths got something that is not JSON
    "too_deep",  # JSON nested deeper than the decoder allows
    "non_finite",  # NaN, Infinity, or a number out of float range
    "out_of_range",  # outside the value's plausible range: kept, stored BAD
    "not_number",  # a plain payload that is neither a number nor a mapped word
    "wrong_type",  # an object, array or non-numeric string where a number belongs
    "unmapped",  # a word or boolean the value's `map` does not list
    "missing",  # a required path is absent (or null)
    "too_many_values",  # a wildcard path matched more than max_readings_per_message
    "bad_name",  # a rendered metric or tag is empty, too long or has control characters
    "bad_timestamp",  # payload time unreadable or outside the window: kept, flagged UNCERTAIN
    "no_values",  # every value was optional and absent (counted, not logged)
    "retained",  # a retained message, ignored by `retained = "ignore"` (counted, not logged)
    "too_many_series",  # the source's series cap is reached (counted by the source)
)
DEFAULT_MAX_AGE_S = 7 * 86400.0
DEFAULT_MAX_AHEAD_S = 300.0
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAR_RE = re.compile(r"\{([^{}]*)\}")
_NON_FINITE_RE = re.compile(rb"(?<![A-Za-z0-9_\"])-?(?:NaN|Infinity)(?![A-Za-z0-9_\"])")
_INDEX_RE = re.compile(r"\[(-?\d+)\]")
# Outside strings: NaN/Infinity tokens and numbers (which may overflow a float).
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|(-?(?:NaN|Infinity))|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)')
_NON_FINITE_MARK = "\x00non-finite:"


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Frozen, unknown keys refused: the same rules as agent.config's tables."""


_Template = Annotated[str, msgspec.Meta(max_length=256)]


class MqttValue(_Struct, frozen=True):
    """One reading taken from each message a rule matches."""

    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    path: _Template = ""
    unit: Annotated[str, msgspec.Meta(max_length=MAX_NAME_LEN)] = ""  # a UCUM code
    kind: Kind | None = None  # None: cumulative in a counter unit, gauge otherwise
    min: float | None = None  # plausible range, within the unit's physical limits
    max: float | None = None
    # The value's medium when the rule sets none (presets: electricity for power and energy).
    medium: Annotated[str, msgspec.Meta(max_length=MAX_NAME_LEN)] = ""
    scale: float = 1.0
    # Words and booleans to numbers: {ON = 1, OFF = 0}, {"true" = 1, "false" = 0}.
    map: dict[str, float] = msgspec.field(default_factory=dict)
    when_missing: Literal["error", "skip"] = "error"
    # "channels": an array at the path is one value per channel, metric `ch<n>.<metric>` (n from 1)
    array: Literal["error", "channels"] = "error"
    # Only for topics whose captures have these values, e.g. {quantity = "power"}.
    when: dict[str, str] = msgspec.field(default_factory=dict)


class MqttRule(_Struct, frozen=True):
    """Which topics, and which values in their messages. Fields left out come from `preset`."""

    preset: str = ""
    topic: _Template | None = None
    values: list[MqttValue] = msgspec.field(default_factory=list)
    metric_template: _Template | None = None
    site: _Template | None = None
    area: _Template | None = None
    process: _Template | None = None
    medium: _Template | None = None
    # The medium per device (the `{device}` capture), over the rule's and the values' media.
    medium_by_device: dict[str, Annotated[str, msgspec.Meta(max_length=MAX_NAME_LEN)]] = (
        msgspec.field(default_factory=dict)
    )
    # "" or left out: arrival time. Otherwise a path to the payload's own time.
    timestamp_path: _Template | None = None
    timestamp_format: Literal["auto", "epoch_s", "epoch_ms", "iso8601"] = "auto"
    timestamp_naive: Literal["reject", "utc"] = "reject"  # an ISO time without an offset
    timestamp_max_age_s: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_MAX_AGE_S
    timestamp_max_ahead_s: Annotated[float, msgspec.Meta(ge=0)] = DEFAULT_MAX_AHEAD_S


class RuleError(ConfigError):
    """A rule cannot be compiled: one problem, `<key>: <reason>`, the key relative to the rule
    (`field` holds it alone); the caller prefixes the rule's own path."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__([f"{field_name}: {reason}"])
        self.field = field_name


# -- compiled forms ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Level:
    kind: Literal["literal", "plus", "hash", "pattern"]
    text: str = ""
    pattern: re.Pattern[str] | None = None


_Step = tuple[str, Any]  # ("key", name) | ("index", n) | ("any", None)
_Template_ = tuple[tuple[bool, str], ...]  # (is_var, text) parts


@dataclass(frozen=True, slots=True)
class _Value:
    metric: _Template_
    steps: tuple[_Step, ...]
    unit: str
    scale: float
    map: dict[str, float]
    required: bool
    limits: Limits = Limits()
    medium: str = ""
    channels: bool = False
    when: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledRule:
    filter: str
    levels: tuple[_Level, ...]
    values: tuple[_Value, ...]
    json: bool
    metric: _Template_
    tags: tuple[_Template_, _Template_, _Template_, _Template_]  # site, area, process, medium
    ts_steps: tuple[_Step, ...] | None
    ts_format: str
    ts_naive_utc: bool
    max_age_ms: int
    max_ahead_ms: int
    media: dict[str, str] = field(default_factory=dict)  # medium by device


@dataclass(slots=True)
class Mapped:
    """What one message became: readings `(key, value, quality, ts_ms or None)` and problems
    `(reason, detail)`. Both can be non-empty: one bad value does not spoil the others."""

    readings: list[tuple[SeriesKey, float, int, int | None]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


class _BadError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


_MISSING: Any = object()


# -- compiling --------------------------------------------------------------------------------


def merge_preset(rule: MqttRule, presets: dict[str, MqttRule]) -> MqttRule:
    """The rule with its preset's fields filled in where the rule leaves them out; the preset's
    values come first, the rule's own values are added."""
    if not rule.preset:
        return rule
    base = presets.get(rule.preset)
    if base is None:
        known = ", ".join(sorted(presets))
        raise RuleError("preset", f"unknown preset {rule.preset!r} (known: {known})")
    changes: dict[str, Any] = {"preset": "", "values": [*base.values, *rule.values]}
    for name in ("topic", "metric_template", "site", "area", "process", "medium", "timestamp_path"):
        if getattr(rule, name) is None:
            changes[name] = getattr(base, name)
    return msgspec.structs.replace(rule, **changes)


def compile_rule(rule: MqttRule, presets: dict[str, MqttRule]) -> CompiledRule:
    """Check and prepare one rule; RuleError names the key at fault."""
    rule = merge_preset(rule, presets)
    if not rule.topic:
        raise RuleError("topic", "missing (required unless a preset gives it)")
    if not rule.values:
        raise RuleError("values", "no values: give at least one, or a preset")
    levels, captures = _compile_topic(rule.topic)
    filt = "/".join(lv.text if lv.kind in ("literal", "plus", "hash") else "+" for lv in levels)
    metric_t = rule.metric_template or "{metric}"
    metric = _compile_template(metric_t, captures | {"metric", "key"}, "metric_template")
    tags = tuple(
        _compile_template(getattr(rule, n) or "", captures | {"key"}, n)
        for n in ("site", "area", "process", "medium")
    )
    if rule.medium_by_device and "device" not in captures:
        raise RuleError("medium_by_device", "needs a {device} capture in the topic")
    values = []
    for i, v in enumerate(rule.values):
        where = f"values[{i}]"
        steps = _compile_path(v.path, f"{where}.path")
        wild = any(s[0] == "any" for s in steps)
        allowed = captures | ({"key"} if wild else set())
        value_metric = _compile_template(v.metric, allowed, f"{where}.metric")
        kind = _check_declaration(v, where, metric, value_metric)
        for name in v.when:
            if name not in captures:
                raise RuleError(f"{where}.when", f"{{{name}}} is not a capture of the topic")
        values.append(
            _Value(
                metric=value_metric,
                steps=steps,
                unit=v.unit,
                scale=v.scale,
                map=dict(v.map),
                required=v.when_missing == "error",
                limits=limits_for(v.unit, kind, v.min, v.max),
                medium=v.medium,
                channels=v.array == "channels",
                when=tuple(sorted(v.when.items())),
            )
        )
        if not math.isfinite(v.scale):
            raise RuleError(f"{where}.scale", "must be a finite number")
        if any(not math.isfinite(x) for x in v.map.values()):
            raise RuleError(f"{where}.map", "values must be finite numbers")
    ts_steps = None
    if rule.timestamp_path:
        ts_steps = _compile_path(rule.timestamp_path, "timestamp_path")
        if any(s[0] == "any" for s in ts_steps):
            raise RuleError("timestamp_path", "a wildcard `*` cannot pick one time")
    json_payload = ts_steps is not None or any(v.steps for v in values)
    return CompiledRule(
        filter=filt,
        levels=levels,
        values=tuple(values),
        json=json_payload,
        metric=metric,
        tags=(tags[0], tags[1], tags[2], tags[3]),
        ts_steps=ts_steps,
        ts_format=rule.timestamp_format,
        ts_naive_utc=rule.timestamp_naive == "utc",
        max_age_ms=int(rule.timestamp_max_age_s * 1000),
        max_ahead_ms=int(rule.timestamp_max_ahead_s * 1000),
        media=dict(rule.medium_by_device),
    )


def _check_declaration(v: MqttValue, where: str, metric: _Template_, value: _Template_) -> Kind:
    """The value's unit, range and kind checked; its kind."""
    problem = _unit_problem(v.unit)
    if problem is not None:
        raise RuleError(f"{where}.unit", problem)
    problem = range_problem(v.unit, v.min, v.max)
    if problem is not None:
        raise RuleError(f"{where}.min", problem)
    kind = v.kind or default_kind(v.unit)
    # The metric the cloud sees ends as the rule's metric_template ends, and where that ends in
    # {metric}, as the value's metric ends: that end must say the kind (wire.units).
    tail = metric[-1] if metric else (False, "")
    if tail == (True, "metric"):
        tail = value[-1] if value else (False, "")
    if tail[0] and kind is not Kind.CUMULATIVE and v.unit in COUNTER_UNITS:
        raise RuleError(f"{where}.kind", "the metric must end in literal text to say its kind")
    # a placeholder at the end passes the suffix check as cumulative, so only the unit counts
    problem = kind_problem("" if tail[0] else tail[1], v.unit, kind)
    if problem is not None:
        raise RuleError(f"{where}.kind", problem)
    return kind


def _compile_topic(topic: str) -> tuple[tuple[_Level, ...], set[str]]:
    if "\0" in topic or not topic:
        raise RuleError("topic", "must be a non-empty MQTT topic filter")
    parts = topic.split("/")
    levels: list[_Level] = []
    captures: set[str] = set()
    for i, part in enumerate(parts):
        if part == "#":
            if i != len(parts) - 1:
                raise RuleError("topic", "`#` must be the last level")
            levels.append(_Level("hash", "#"))
        elif part == "+":
            levels.append(_Level("plus", "+"))
        elif "{" in part or "}" in part:
            bare = _VAR_RE.sub("", part)
            if "{" in bare or "}" in bare:
                raise RuleError("topic", f"unbalanced braces in level {part!r}")
            regex = ""
            pos = 0
            for m in _VAR_RE.finditer(part):
                name = m.group(1)
                if not _NAME_RE.fullmatch(name):
                    raise RuleError("topic", f"{{{name}}}: a capture is a name like {{device}}")
                if name in captures or name in ("metric", "key"):
                    raise RuleError("topic", f"{{{name}}} is used twice or is reserved")
                captures.add(name)
                regex += re.escape(part[pos : m.start()]) + f"(?P<{name}>[^/]*?)"
                pos = m.end()
            regex += re.escape(part[pos:])
            if "+" in part or "#" in part:
                raise RuleError("topic", f"`+` and `#` must be a whole level, got {part!r}")
            levels.append(_Level("pattern", part, re.compile(regex + r"\Z")))
        else:
            if "+" in part or "#" in part:
                raise RuleError("topic", f"`+` and `#` must be a whole level, got {part!r}")
            levels.append(_Level("literal", part))
    return tuple(levels), captures


def _compile_template(text: str, allowed: set[str], where: str) -> _Template_:
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _VAR_RE.finditer(text):
        if m.start() > pos:
            parts.append((False, text[pos : m.start()]))
        name = m.group(1)
        if name not in allowed:
            known = ", ".join(f"{{{n}}}" for n in sorted(allowed)) or "none"
            raise RuleError(where, f"unknown placeholder {{{name}}} (available: {known})")
        parts.append((True, name))
        pos = m.end()
    rest = text[pos:]
    if "{" in rest or "}" in rest or any("{" in p or "}" in p for v, p in parts if not v):
        raise RuleError(where, "unbalanced braces")
    if rest:
        parts.append((False, rest))
    return tuple(parts)


def _compile_path(path: str, where: str) -> tuple[_Step, ...]:
    if not path:
        return ()
    steps: list[_Step] = []
    for segment in path.split("."):
        head = segment.split("[", 1)[0]
        tail = segment[len(head) :]
        if head == "*":
            steps.append(("any", None))
        elif head:
            steps.append(("key", head))
        elif not tail:
            raise RuleError(where, f"empty key in path {path!r}")
        indexes = _INDEX_RE.findall(tail)
        if "".join(f"[{n}]" for n in indexes) != tail:
            raise RuleError(where, f"bad index in {segment!r} (write key[0] or key[-1])")
        steps.extend(("index", int(n)) for n in indexes)
    if sum(1 for s in steps if s[0] == "any") > 1:
        raise RuleError(where, "at most one `*` per path")
    return tuple(steps)


# -- mapping ----------------------------------------------------------------------------------


class Mapper:
    """Compiled rules, matched in order (the first rule whose topic matches takes the message)."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        *,
        max_payload_bytes: int = 65536,
        max_readings_per_message: int = 1000,
    ) -> None:
        self.rules = tuple(rules)
        self.max_payload_bytes = max_payload_bytes
        self.max_readings = max_readings_per_message
        self._topics: dict[str, tuple[CompiledRule, dict[str, str]] | None] = {}

    @property
    def filters(self) -> list[str]:
        """The subscription filters, each once, in rule order."""
        return list(dict.fromkeys(r.filter for r in self.rules))

    def match(self, topic: str) -> tuple[CompiledRule, dict[str, str]] | None:
        if topic in self._topics:
            return self._topics[topic]
        found = None
        levels = topic.split("/")
        for rule in self.rules:
            captures = _match_levels(rule.levels, levels)
            if captures is not None:
                found = (rule, captures)
                break
        if len(self._topics) >= 4096:  # bounded: a flood of distinct topics cannot grow it
            self._topics.clear()
        self._topics[topic] = found
        return found

    def map(self, topic: str, payload: bytes, *, now_ms: int | None) -> Mapped:
        """Readings of one message. `now_ms` is the agent's trusted time, None if untrusted."""
        out = Mapped()
        try:
            self._map(topic, payload, now_ms, out)
        except _BadError as bad:
            out.problems.append((bad.reason, bad.detail))
        except RecursionError:
            out.readings.clear()
            out.problems.append(("too_deep", "nesting deeper than the decoder allows"))
        return out

    def _map(self, topic: str, payload: bytes, now_ms: int | None, out: Mapped) -> None:
        hit = self.match(topic)
        if hit is None:
            raise _BadError("unknown_topic", "no rule takes it")
        rule, captures = hit
        if len(payload) > self.max_payload_bytes:
            raise _BadError("too_large", f"{len(payload)} bytes > {self.max_payload_bytes}")
        doc = _decode(payload) if rule.json else _text(payload)
        ts_ms, quality = self._timestamp(rule, doc, now_ms, out)
        tag_values = [_render(t, captures) for t in rule.tags]
        names = dict(captures)
        for value in rule.values:
            if value.when and any(captures.get(k) != want for k, want in value.when):
                continue
            found = False
            for raw, key in _walk(doc, value.steps, 0, None):
                found = True
                channels = value.channels and isinstance(raw, list)
                items = _channels(raw) if channels else ((raw, ""),)
                for item, prefix in items:
                    if len(out.readings) >= self.max_readings:
                        raise _BadError(
                            "too_many_values", f"more than {self.max_readings} in one message"
                        )
                    names["key"] = key or ""
                    try:
                        number = _number(item, value.map) * value.scale
                        names["metric"] = prefix + _render(value.metric, names)
                        series = self._key(rule, value, names, tag_values, key)
                    except _BadError as bad:
                        out.problems.append((bad.reason, f"{_show_metric(value)}: {bad.detail}"))
                        continue
                    limits = value.limits  # `number` is finite (`_number`): the range is all
                    if limits.low <= number <= limits.high:
                        out.readings.append((series, number, quality, ts_ms))
                        continue
                    detail = f"{series.metric}: {number:g} {series.unit}"
                    out.problems.append(("out_of_range", detail))
                    out.readings.append((series, number, Quality.BAD | (quality & 4), ts_ms))
            if not found and value.required:
                out.problems.append(("missing", f"{_show_metric(value)}: no value at its path"))
        if not out.readings and not out.problems:
            out.problems.append(("no_values", "no value present"))

    def _key(
        self,
        rule: CompiledRule,
        value: _Value,
        names: dict[str, str],
        tag_values: list[str],
        key: str | None,
    ) -> SeriesKey:
        metric = _render(rule.metric, names)
        tags = [_render(t, names) for t in rule.tags] if key is not None else tag_values
        medium = (rule.media and rule.media.get(names.get("device", ""))) or tags[3] or value.medium
        if medium != tags[3]:
            tags = [*tags[:3], medium]  # never the message's shared list: the next value uses it
        if not metric:
            raise _BadError("bad_name", "the metric is empty")
        for text in (metric, value.unit, *tags):
            if len(text) > MAX_NAME_LEN or not text.isprintable():
                raise _BadError("bad_name", f"{_clip(text)!r} is too long or not printable")
        return SeriesKey(metric, value.unit, tags[0], tags[1], tags[2], tags[3])

    def _timestamp(
        self, rule: CompiledRule, doc: Any, now_ms: int | None, out: Mapped
    ) -> tuple[int | None, int]:
        if rule.ts_steps is None:
            return None, 0
        raw = next(_walk(doc, rule.ts_steps, 0, None), (_MISSING, None))[0]
        try:
            if raw is _MISSING:
                raise _BadError("bad_timestamp", "no time at timestamp_path")
            ts = _parse_time(raw, rule.ts_format, naive_utc=rule.ts_naive_utc)
            if not MIN_TS_MS <= ts <= MAX_TS_MS:
                raise _BadError("bad_timestamp", f"{ts} ms is outside 2000..2100")
            if now_ms is None:
                return ts, TIME_UNTRUSTED  # our clock cannot vouch for it either way
            if ts > now_ms + rule.max_ahead_ms:
                raise _BadError("bad_timestamp", f"{(ts - now_ms) / 1000:.0f} s ahead of the clock")
            if ts < now_ms - rule.max_age_ms:
                raise _BadError("bad_timestamp", f"{(now_ms - ts) / 1000:.0f} s old")
        except _BadError as bad:
            out.problems.append((bad.reason, bad.detail))
            return None, Quality.UNCERTAIN
        return ts, 0


def _match_levels(pattern: tuple[_Level, ...], levels: list[str]) -> dict[str, str] | None:
    captures: dict[str, str] = {}
    for i, lv in enumerate(pattern):
        if lv.kind == "hash":
            # `#` also matches the parent level itself (MQTT 3.1.1 section 4.7.1.2), but never
            # a topic starting with `$` at the first level (section 4.7.2).
            return None if i == 0 and levels[0].startswith("$") else captures
        if i >= len(levels):
            return None
        level = levels[i]
        if i == 0 and level.startswith("$") and lv.kind != "literal":
            return None
        if lv.kind == "literal":
            if level != lv.text:
                return None
        elif lv.pattern is not None:
            m = lv.pattern.match(level)
            if m is None:
                return None
            captures.update(m.groupdict())
    return captures if len(levels) == len(pattern) else None


def _decode(payload: bytes) -> Any:
    try:
        return msgspec.json.decode(payload)
    except msgspec.ValidationError as exc:  # msgspec: "Number out of range"
        detail = str(exc)
    except msgspec.DecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadError("binary", f"{len(payload)} bytes, not UTF-8") from None
        if not _NON_FINITE_RE.search(payload):
            raise _BadError("not_json", str(exc)) from None
        detail = "NaN or Infinity in JSON"
    # One non-finite field must not spoil the message: mark each such token, so that only the
    # value read from it is refused (`_number`).
    try:
        return msgspec.json.decode(_mark_non_finite(payload.decode("utf-8")))
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise _BadError("non_finite", detail) from None


def _mark_non_finite(text: str) -> bytes:
    """The JSON text with every NaN/Infinity token, and every number beyond float range, outside
    strings replaced by a marker string."""

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is None and (m.group(2) is None or math.isfinite(float(m.group(2)))):
            return m.group(0)
        return msgspec.json.encode(_NON_FINITE_MARK + m.group(0)).decode()

    return _TOKEN_RE.sub(repl, text).encode()


def _channels(raw: list[Any]) -> list[tuple[Any, str]]:
    """(value, metric prefix) per element of an array: `ch1.`, `ch2.`, ..."""
    return [(item, f"ch{j + 1}.") for j, item in enumerate(raw)]


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _BadError("binary", f"{len(payload)} bytes, not UTF-8") from None


def _walk(doc: Any, steps: tuple[_Step, ...], i: int, key: str | None) -> Iterator[tuple[Any, Any]]:
    """The values at a path: one, none (absent or null), or several under a `*`."""
    while i < len(steps):
        kind, arg = steps[i]
        if kind == "key":
            if not isinstance(doc, dict):
                return
            doc = doc.get(arg, _MISSING)
            if doc is _MISSING:
                return
        elif kind == "index":
            if not isinstance(doc, list) or not -len(doc) <= arg < len(doc):
                return
            doc = doc[arg]
        else:
            if isinstance(doc, dict):
                items: Iterator[tuple[str, Any]] = iter(doc.items())
            elif isinstance(doc, list):
                items = ((str(j), v) for j, v in enumerate(doc))
            else:
                return
            for k, v in items:
                yield from _walk(v, steps, i + 1, k)
            return
        i += 1
    if doc is not None:
        yield doc, key


def _number(raw: Any, mapping: dict[str, float]) -> float:
    if isinstance(raw, bool):
        word = "true" if raw else "false"
        if mapping:
            if word in mapping:
                return mapping[word]
            raise _BadError("unmapped", f"{word} is not in the value's map")
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float):
        try:
            number = float(raw)
        except OverflowError:
            raise _BadError("non_finite", "integer out of float range") from None
        if not math.isfinite(number):
            raise _BadError("non_finite", f"{raw!r}")
        return number
    if isinstance(raw, str):
        if raw in mapping:
            return mapping[raw]
        if raw.startswith(_NON_FINITE_MARK):
            raise _BadError("non_finite", raw[len(_NON_FINITE_MARK) :])
        try:
            number = float(raw)
        except ValueError:
            reason = "unmapped" if mapping else "not_number"
            raise _BadError(reason, f"{_clip(raw)!r} is not a number") from None
        if not math.isfinite(number):
            raise _BadError("non_finite", f"{_clip(raw)!r}")
        return number
    raise _BadError("wrong_type", f"got {'an object' if isinstance(raw, dict) else 'an array'}")


def _parse_time(raw: Any, fmt: str, *, naive_utc: bool) -> int:
    if isinstance(raw, str) and fmt != "iso8601":
        try:
            raw = float(raw)
        except ValueError:
            if fmt != "auto":
                raise _BadError("bad_timestamp", f"{_clip(raw)!r} is not a number") from None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _BadError("bad_timestamp", "not a number or a text time")
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise _BadError("bad_timestamp", f"{_clip(raw)!r} is not an ISO 8601 time") from None
        if dt.tzinfo is None:
            if not naive_utc:
                raise _BadError("bad_timestamp", f"{_clip(raw)!r} has no UTC offset")
            dt = dt.replace(tzinfo=UTC)
        return (dt - _EPOCH) // timedelta(milliseconds=1)
    if fmt == "iso8601":
        raise _BadError("bad_timestamp", "a number where an ISO 8601 time belongs")
    if not math.isfinite(raw):
        raise _BadError("bad_timestamp", "not finite")
    seconds = fmt == "epoch_s" or (fmt == "auto" and abs(raw) < 1e11)
    try:
        return int(raw * 1000) if seconds else int(raw)
    except (OverflowError, ValueError):
        raise _BadError("bad_timestamp", "out of range") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _render(template: _Template_, names: dict[str, str]) -> str:
    if len(template) == 1:
        is_var, text = template[0]
        return names.get(text, "") if is_var else text
    return "".join(names.get(t, "") if v else t for v, t in template)


def _show_metric(value: _Value) -> str:
    return "".join(f"{{{t}}}" if v else t for v, t in value.metric)


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
