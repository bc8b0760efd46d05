"""Weighbridge tickets from a scale's weights: one weighing per load. Sans-I/O: weights and their
stability in, weighings out; no clock, no port.

A scale (streaming or polled) reports the weight on its platform again and again; a weighbridge
ticket is one weighing of one load. `TicketBuilder.feed` turns the stream into weighings:

- the platform is **empty** while the weight is below `empty_below` (default: `threshold`);
- a weight at or above `threshold` is a **load**; the load arriving is motion, and so is every
  unstable weight (MT-SICS `S D`, Toledo's motion bit, A&D `US`);
- the first run of `stable_count` stable weights at or above `threshold` after motion makes
  **one weighing**: gross (that weight), tare (the instrument's when it sends one, else the
  configured `tare`), net = gross − tare, the unit, and the material;
- after a weighing, nothing more is weighed until the platform is empty again: a truck that
  stands still for an hour is one ticket, and one that rocks on the platform too;
- a value the instrument could not give (overload, error) is neither stable nor empty: it
  interrupts a stable run and changes nothing else.

The material comes from the instrument when it sends a code (a group of the answer named by
`material_group`, mapped through `materials`, the code itself when unmapped) or from `material`
in the configuration. Masses are also given in kg (`net_kg`, as the materials figure wants) when
the unit is one of `KG_PER_UNIT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from firmware_bridge.errors import ConfigError
from wire.models import AttrValue

KG_PER_UNIT: Final[dict[str, float]] = {
    "kg": 1.0,
    "g": 0.001,
    "t": 1000.0,
    "lb": 0.45359237,
}


class TicketConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Weighings from a scale's weight (see the module docstring); amounts in the scale's unit."""

    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "weighbridge_ticket"
    weight: str = "weight"  # the metric whose values are weighed
    tare_metric: str = ""  # a metric carrying the instrument's tare (Toledo: "tare")
    threshold: Annotated[float, msgspec.Meta(gt=0)]
    empty_below: Annotated[float, msgspec.Meta(ge=0)] | None = None
    stable_count: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    tare: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    material: str = ""
    material_group: str = ""  # a group of the answer's pattern carrying a material code
    materials: dict[str, str] = msgspec.field(default_factory=dict)
    direction: str = ""  # copied into every ticket ("in", "out"): see docs/figures.md


def ticket_problems(
    config: TicketConfig, groups: set[str], metrics: set[str], where: str
) -> list[str]:
    """What is wrong with `config` for an instrument whose pattern has `groups` and whose values
    are `metrics`; one line per problem."""
    problems: list[str] = []
    if config.weight not in metrics:
        problems.append(f"{where}.weight: no value has the metric {config.weight!r}")
    if config.tare_metric and config.tare_metric not in metrics:
        problems.append(f"{where}.tare_metric: no value has the metric {config.tare_metric!r}")
    if config.material_group and config.material_group not in groups:
        problems.append(f"{where}.material_group: pattern has no group {config.material_group!r}")
    if config.empty_below is not None and config.empty_below > config.threshold:
        problems.append(f"{where}.empty_below: above threshold")
    if not config.material and not config.material_group:
        problems.append(f"{where}: set `material`, or `material_group` if the scale sends one")
    return problems


@dataclass(frozen=True, slots=True)
class Weighing:
    gross: float
    tare: float
    net: float
    unit: str
    material: str

    def attrs(self, source: str, direction: str = "") -> tuple[tuple[str, AttrValue], ...]:
        """The ticket event's attributes (the contract of docs/figures.md, "Raw material")."""
        out: list[tuple[str, AttrValue]] = [("material", self.material)]
        per_kg = KG_PER_UNIT.get(self.unit)
        if per_kg is not None:
            out += [
                ("net_kg", round(self.net * per_kg, 6)),
                ("gross_kg", round(self.gross * per_kg, 6)),
                ("tare_kg", round(self.tare * per_kg, 6)),
            ]
        out += [("net", self.net), ("gross", self.gross), ("tare", self.tare)]
        out += [("unit", self.unit), ("source", source)]
        if direction:
            out.append(("direction", direction))
        return tuple(out)


class TicketBuilder:
    def __init__(self, config: TicketConfig) -> None:
        if config.empty_below is not None and config.empty_below > config.threshold:
            raise ConfigError(["ticket.empty_below: above threshold"])
        self.config = config
        self._empty_below = config.threshold if config.empty_below is None else config.empty_below
        self._loaded = False
        self._motion = False
        self._weighed = False
        self._stable_run = 0
        self.weighings = 0

    def feed(
        self,
        weight: float | None,
        *,
        stable: bool,
        unit: str,
        tare: float | None = None,
        code: str = "",
    ) -> Weighing | None:
        """One weight as the scale reported it; a `Weighing` when this completes one."""
        cfg = self.config
        if weight is None:
            self._stable_run = 0
            return None
        if weight < self._empty_below:
            self._loaded = self._motion = self._weighed = False
            self._stable_run = 0
            return None
        if weight < cfg.threshold:
            return None  # between empty and loaded: neither
        if not self._loaded:
            self._loaded = self._motion = True  # the load arriving is motion
        if not stable:
            self._motion = True
            self._stable_run = 0
            return None
        self._stable_run += 1
        if self._weighed or not self._motion or self._stable_run < cfg.stable_count:
            return None
        self._weighed = True
        self.weighings += 1
        used_tare = cfg.tare if tare is None else tare
        material = cfg.materials.get(code, code) if code else cfg.material
        return Weighing(
            weight, used_tare, round(weight - used_tare, 9), unit, material or cfg.material
        )
