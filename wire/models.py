"""What a gateway tells the cloud: series, readings, events and the batch that carries them.

These are the in-memory shapes both sides program against. The bytes on the wire are a columnar
layout of the same data (see `wire.codec`); nothing here does I/O.

Invariants (checked by `Batch.validate`, which the codec runs on both sides):
- timestamps are integer UTC epoch milliseconds within [`MIN_TS_MS`, `MAX_TS_MS`];
- values are finite floats; a reading that could not be measured is sent with quality BAD, not NaN;
- quality codes are `Quality` values, optionally OR-ed with `TIME_UNTRUSTED`;
- `prev` is 32 bytes: the SHA-256 of the previous batch's encoded (uncompressed) body, or 32 zero
  bytes (`GENESIS`) before a device's first batch;
- strings are short and printable, so a hostile batch cannot smuggle megabytes through a name.

These rules are written once, as pure functions that return the first `Problem` (the field at
fault and a `Reason`) or None: `name_problem`, `key_problem`, `reading_problem`, `event_problem`.
`Batch.validate` raises on them; the agent applies the same functions where a reading or event
enters it, so nothing it stores can fail to encode.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from wire.errors import InvalidBatchError

GENESIS = bytes(32)
MIN_TS_MS = 946_684_800_000  # 2000-01-01: anything earlier is an unset clock, never a reading time
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
MAX_NAME_LEN = 128
MAX_ATTR_VALUE_LEN = 256
MAX_EVENT_ATTRS = 32
MIN_ATTR_INT, MAX_ATTR_INT = -(2**63), 2**64 - 1  # what MessagePack can carry

# A reading taken while the gateway's wall clock could not be trusted carries this bit in its
# quality code, so a late or early timestamp is visible instead of silently plausible.
TIME_UNTRUSTED = 4


class Quality(enum.IntEnum):
    """How far a value can be trusted; a stale or out-of-range value is kept and flagged."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


VALID_QUALITY_CODES = frozenset(q | t for q in Quality for t in (0, TIME_UNTRUSTED))


class ClockState(enum.IntEnum):
    """Whether the gateway's wall clock was trustworthy when the batch was cut."""

    SYNCED = 0  # NTP-synchronised
    CORRECTED = 1  # corrected against the receiver's time
    UNTRUSTED = 2  # no reference yet; readings carry TIME_UNTRUSTED


class Medium(enum.StrEnum):
    """What a series measures the flow of; free text is allowed, these are the known ones."""

    ELECTRICITY = "electricity"
    WATER = "water"
    GAS = "gas"
    MATERIAL = "material"
    PRODUCT = "product"  # with a mass unit: a production counter (docs/figures.md)
    STEAM = "steam"
    AIR = "air"


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """A series within one device: a metric with its unit and tags. Hashable, used as a dict key."""

    metric: str
    unit: str = ""
    site: str = ""
    area: str = ""
    process: str = ""
    medium: str = ""

    def tags(self) -> dict[str, str]:
        """The non-empty tags, by name."""
        pairs = (
            ("site", self.site),
            ("area", self.area),
            ("process", self.process),
            ("medium", self.medium),
        )
        return {k: v for k, v in pairs if v}


@dataclass(slots=True)
class SeriesData:
    """The readings of one series in a batch, as parallel columns (the codec's natural shape)."""

    key: SeriesKey
    ts_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)

    def append(self, ts_ms: int, value: float, quality: int = Quality.GOOD) -> None:
        self.ts_ms.append(ts_ms)
        self.values.append(value)
        self.quality.append(quality)

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one series at one time."""

    series: SeriesKey
    ts_ms: int
    value: float
    quality: int = Quality.GOOD


AttrValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Event:
    """A discrete record, such as a weighbridge ticket (material, lot, net mass)."""

    kind: str
    ts_ms: int
    attrs: tuple[tuple[str, AttrValue], ...] = ()
    quality: int = Quality.GOOD


@dataclass(frozen=True, slots=True)
class Counters:
    """The agent's own loss accounting since the previous batch; the cloud adds them up."""

    dropped_buffer_full: int = 0  # oldest readings evicted because the buffer hit its size bound
    dropped_damaged: int = 0  # readings lost with a damaged buffer file that was moved aside
    rejected_invalid: int = 0  # values a source produced that could not become a reading


@dataclass(frozen=True, slots=True)
class ClockReport:
    """The gateway's clock when the batch was cut: state and its best offset estimate."""

    state: ClockState = ClockState.SYNCED
    offset_ms: int = 0  # gateway wall clock minus reference time, when known


@dataclass(slots=True)
class Batch:
    """A device's numbered, chained unit of upload."""

    device_id: str
    seq: int
    prev: bytes
    boot_id: str
    series: list[SeriesData] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    clock: ClockReport = field(default_factory=ClockReport)
    # The agent config that produced these readings (`agent.health.config_version`); "" when
    # the agent does not say (an older agent).
    config_version: str = ""

    def reading_count(self) -> int:
        return sum(len(s) for s in self.series)

    def readings(self) -> Iterator[Reading]:
        """Every reading, series by series, in the order each series holds them."""
        for s in self.series:
            for ts, value, quality in zip(s.ts_ms, s.values, s.quality, strict=True):
                yield Reading(s.key, ts, value, quality)

    def validate(self) -> None:
        """Raise InvalidBatchError naming the first field that breaks the contract."""
        for name in ("device_id", "boot_id"):
            problem = name_problem(getattr(self, name), name)
            if problem is not None:
                raise InvalidBatchError(str(problem))
        problem = name_problem(self.config_version, "config_version", allow_empty=True)
        if problem is not None:
            raise InvalidBatchError(str(problem))
        if not 1 <= self.seq < 2**63:
            raise InvalidBatchError(f"seq: {self.seq} is not in 1..2^63-1")
        if len(self.prev) != 32:
            raise InvalidBatchError(f"prev: {len(self.prev)} bytes, expected 32")
        for name in ("dropped_buffer_full", "dropped_damaged", "rejected_invalid"):
            if not 0 <= getattr(self.counters, name) < 2**63:
                raise InvalidBatchError(f"counters.{name}: out of range")
        if not -(2**62) < self.clock.offset_ms < 2**62:
            raise InvalidBatchError("clock.offset_ms: out of range")
        seen: set[SeriesKey] = set()
        for i, s in enumerate(self.series):
            where = f"series[{i}]"
            _raise(key_problem(s.key), where)
            if s.key in seen:
                raise InvalidBatchError(f"{where}: series {s.key.metric!r} appears twice")
            seen.add(s.key)
            _check_columns(s, where)
        for i, e in enumerate(self.events):
            _raise(event_problem(e), f"events[{i}]")


class Reason(enum.StrEnum):
    """Why a name, value or event breaks the contract: the label a refusal is counted under."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    CONTROL_CHARACTERS = "control_characters"
    TIMESTAMP_RANGE = "timestamp_range"
    NOT_FINITE = "not_finite"
    QUALITY_CODE = "quality_code"
    TOO_MANY_ATTRS = "too_many_attrs"
    DUPLICATE_ATTR = "duplicate_attr"
    BAD_ATTR_VALUE = "bad_attr_value"
    OUT_OF_RANGE = "out_of_range"


@dataclass(frozen=True, slots=True)
class Problem:
    """The first rule a reading, series key or event breaks: `field` names the part at fault
    ("unit", "value", "attrs.lot"), `detail` says how, in the words `Batch.validate` uses."""

    field: str
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


def name_problem(value: str, field: str, *, allow_empty: bool = False) -> Problem | None:
    """A metric, tag, unit, id or attribute name: 1..MAX_NAME_LEN printable characters (tags
    and units may be empty)."""
    if not value and not allow_empty:
        return Problem(field, Reason.EMPTY, "must not be empty")
    if len(value) > MAX_NAME_LEN:
        return Problem(field, Reason.TOO_LONG, f"longer than {MAX_NAME_LEN} characters")
    if not value.isprintable():
        return Problem(field, Reason.CONTROL_CHARACTERS, "contains control characters")
    return None


def key_problem(key: SeriesKey) -> Problem | None:
    """What makes a series key unsendable, or None: the metric is a name, the rest may be empty."""
    problem = name_problem(key.metric, "metric")
    if problem is not None:
        return problem
    for name in ("unit", "site", "area", "process", "medium"):
        problem = name_problem(getattr(key, name), name, allow_empty=True)
        if problem is not None:
            return problem
    return None


def ts_problem(ts_ms: int, field: str = "ts") -> Problem | None:
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        return Problem(field, Reason.TIMESTAMP_RANGE, f"timestamp {ts_ms} ms is outside 2000..2100")
    return None


def reading_problem(ts_ms: int | None, value: float, quality: int) -> Problem | None:
    """What makes one reading unsendable, or None. `ts_ms` None: not known yet (the agent
    stamps it), so only the value and the quality code are checked."""
    if not math.isfinite(value):
        return Problem("value", Reason.NOT_FINITE, "not a finite number")
    if quality not in VALID_QUALITY_CODES:
        return Problem("quality", Reason.QUALITY_CODE, f"unknown code {quality}")
    return None if ts_ms is None else ts_problem(ts_ms)


def event_problem(event: Event, *, check_ts: bool = True) -> Problem | None:
    """What makes an event unsendable, or None (`check_ts` False: its time is not final yet)."""
    problem = name_problem(event.kind, "kind")
    if problem is not None:
        return problem
    if check_ts and (problem := ts_problem(event.ts_ms)) is not None:
        return problem
    if event.quality not in VALID_QUALITY_CODES:
        return Problem("quality", Reason.QUALITY_CODE, f"unknown code {event.quality}")
    if len(event.attrs) > MAX_EVENT_ATTRS:
        return Problem("attrs", Reason.TOO_MANY_ATTRS, f"more than {MAX_EVENT_ATTRS}")
    names: set[str] = set()
    for name, value in event.attrs:
        problem = name_problem(name, "attrs")
        if problem is not None:
            return problem
        where = f"attrs.{name}"
        if name in names:
            return Problem(where, Reason.DUPLICATE_ATTR, "duplicate attribute")
        names.add(name)
        if isinstance(value, float) and not math.isfinite(value):
            return Problem(where, Reason.NOT_FINITE, "not a finite number")
        if isinstance(value, int) and not MIN_ATTR_INT <= value <= MAX_ATTR_INT:
            return Problem(where, Reason.OUT_OF_RANGE, "integer beyond 64 bits")
        if isinstance(value, str) and (len(value) > MAX_ATTR_VALUE_LEN or not value.isprintable()):
            return Problem(where, Reason.BAD_ATTR_VALUE, "string too long or unprintable")
    return None


def _raise(problem: Problem | None, where: str) -> None:
    if problem is not None:
        raise InvalidBatchError(f"{where}.{problem}")


def _check_columns(s: SeriesData, where: str) -> None:
    n = len(s.ts_ms)
    if n == 0 or len(s.values) != n or len(s.quality) != n:
        raise InvalidBatchError(f"{where}: columns must be non-empty and of equal length")
    # min/max first: one C-speed pass each instead of a Python loop per reading
    _raise(ts_problem(min(s.ts_ms)), where)
    _raise(ts_problem(max(s.ts_ms)), where)
    if not all(map(math.isfinite, s.values)):
        bad = next(j for j, v in enumerate(s.values) if not math.isfinite(v))
        raise InvalidBatchError(f"{where}.values[{bad}]: not a finite number")
    if not VALID_QUALITY_CODES.issuperset(s.quality):
        bad = next(j for j, q in enumerate(s.quality) if q not in VALID_QUALITY_CODES)
        raise InvalidBatchError(f"{where}.quality[{bad}]: unknown code {s.quality[bad]}")


def group_readings(readings: Sequence[Reading]) -> list[SeriesData]:
    """Columns per series, in first-seen order, each keeping the readings' order."""
    by_key: dict[SeriesKey, SeriesData] = {}
    for r in readings:
        s = by_key.get(r.series)
        if s is None:
            s = by_key[r.series] = SeriesData(r.series)
        s.append(r.ts_ms, r.value, r.quality)
    return list(by_key.values())
