"""The plant file: processes and shifts as configuration of the receiver (`edge-cloud serve
--plant FILE`, `TIERLESS_PLANT_FILE`), read and validated once at start-up. docs/figures.md,
"The plant file".

    timezone = "Europe/Berlin"      # optional: else the dashboard's --timezone
    night_hours = [0, 5]            # optional: [start, end) local hours of the night
    idle_margin_hours = 1           # optional

    [[processes]]
    id = "line1"                    # what the figures, the API and tickets' `process` call it
    name = "Line 1"                 # optional: shown on the page
    tags = ["L1", "line-1"]         # optional: other series `process` tag values that belong
    direction = "out"               # optional: out (product leaving) or in (raw material)
    materials = ["clinker"]         # optional: tickets of these materials belong

    [[shifts]]                      # optional: all of them, or the defaults below
    name = "early"
    start = "06:00"                 # local time, on the hour (the figures are hourly)
    length_hours = 8

Without a file nothing changes: the processes are those the window's tickets name, shifts early
06-14, late 14-22, night 22-06, night 00-05, the dashboard's time zone. Problems are reported as
`FILE: key.path: reason` (bad TOML: its line and column): a wrong type or unknown key first, as
msgspec finds it; once the shapes are right, every other problem at once.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from cloud.apps.intensity import DAY_PERIOD, PlantConfig, ProcessConfig, Shift
from cloud.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024


class ProcessEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    name: str = ""
    tags: list[str] = []
    direction: Literal["out", "in"] = "out"
    materials: list[str] = []


class ShiftEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    start: str
    length_hours: int


class PlantFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    timezone: str | None = None
    night_hours: list[int] | None = None
    idle_margin_hours: int = 1
    processes: list[ProcessEntry] = []
    shifts: list[ShiftEntry] | None = None


def _path(msgspec_path: str) -> str:
    # msgspec says "`$.processes[0].id`"; people read "processes[0].id"
    return msgspec_path.strip("`").removeprefix("$").removeprefix(".") or "file"


def _hour(text: str) -> int | None:
    hh, sep, mm = text.partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2:
        return None
    h, m = int(hh), int(mm)
    return h if 0 <= h < 24 and m == 0 else None


def _check(f: PlantFile, problems: list[str]) -> None:
    if f.timezone is not None:
        try:
            ZoneInfo(f.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            problems.append(f"timezone: {f.timezone!r} is not an IANA zone (e.g. Europe/Berlin)")
    if f.night_hours is not None and (
        len(f.night_hours) != 2 or not 0 <= f.night_hours[0] < f.night_hours[1] <= 24
    ):
        problems.append("night_hours: expected [start, end], local hours, start < end <= 24")
    if not 0 <= f.idle_margin_hours <= 24:
        problems.append("idle_margin_hours: expected 0..24")
    owner: dict[str, str] = {}
    for i, p in enumerate(f.processes):
        where = f"processes[{i}]"
        if not p.id.strip() or p.id != p.id.strip() or not p.id.isprintable():
            problems.append(f"{where}.id: expected a printable name without outer spaces")
        named = [(f"{where}.id", p.id)] + [(f"{where}.tags[{j}]", t) for j, t in enumerate(p.tags)]
        for key, tag in named:
            if owner.get(tag, p.id) != p.id:
                problems.append(f"{key}: {tag!r} already belongs to process {owner[tag]!r}")
            elif tag in owner and key.endswith(".id"):
                problems.append(f"{key}: {tag!r} is named twice")
            owner.setdefault(tag, p.id)
    names: set[str] = set()
    for i, s in enumerate(f.shifts or []):
        where = f"shifts[{i}]"
        if not s.name.strip() or s.name == DAY_PERIOD or s.name in names:
            problems.append(f"{where}.name: expected a unique name other than {DAY_PERIOD!r}")
        names.add(s.name)
        if _hour(s.start) is None:
            problems.append(f"{where}.start: expected HH:00 (on the hour), got {s.start!r}")
        if not 1 <= s.length_hours <= 24:
            problems.append(f"{where}.length_hours: expected 1..24, got {s.length_hours}")
    if f.shifts is not None and not f.shifts:
        problems.append("shifts: give at least one shift, or leave the key out for the defaults")


def parse_plant(text: str, *, source: str, default_tz: str = "UTC") -> PlantConfig:
    """The plant's configuration from the text of a plant file; ConfigError naming `source`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: {exc}"]) from None
    try:
        f = msgspec.convert(raw, PlantFile, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at ")
        if not message:  # no path: the whole file
            message, where = str(exc), "$"
        raise ConfigError([f"{source}: {_path(where)}: {message}"]) from None
    problems: list[str] = []
    _check(f, problems)
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    config = PlantConfig(
        tuple(
            ProcessConfig(
                p.id,
                direction=p.direction,
                materials=frozenset(p.materials),
                tags=frozenset(p.tags),
                display=p.name,
            )
            for p in f.processes
        ),
        tz=f.timezone or default_tz,
        idle_margin_hours=f.idle_margin_hours,
    )
    if f.shifts is not None:
        shifts = []
        for s in f.shifts:
            start = _hour(s.start)
            if start is None:  # checked above; for the type checker
                raise ConfigError([f"{source}: shifts: bad start {s.start!r}"])
            shifts.append(Shift(s.name, start, (start + s.length_hours) % 24))
        config = dataclasses.replace(config, shifts=tuple(shifts))
    if f.night_hours is not None:
        config = dataclasses.replace(config, night=(f.night_hours[0], f.night_hours[1]))
    return config


def load_plant(path: Path, *, default_tz: str = "UTC") -> PlantConfig:
    """`parse_plant` of a file; ConfigError when it cannot be read."""
    try:
        data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise ConfigError([f"plant file {path}: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([f"plant file {path}: larger than {MAX_FILE_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"plant file {path}: not UTF-8"]) from None
    return parse_plant(text, source=str(path), default_tz=default_tz)


def for_window(config: PlantConfig, named: Iterable[str]) -> PlantConfig:
    """The configuration of one request: the configured processes, or, when the file names none
    (or there is no file), one process for each name the window's data gives (`named`: tickets'
    `process` attributes, operator entries' processes, production counters' tags)."""
    if config.processes:
        return config
    names = sorted({n for n in named if n})
    return dataclasses.replace(config, processes=tuple(ProcessConfig(n) for n in names))
