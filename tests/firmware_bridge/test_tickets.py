"""The ticket builder: weights and stability in, one weighing per load out."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from firmware_bridge.tickets import TicketBuilder, TicketConfig, ticket_problems


def builder(**kw: object) -> TicketBuilder:
    raw: dict[str, object] = {"threshold": 500.0, "material": "SAND", **kw}
    return TicketBuilder(msgspec.convert(raw, TicketConfig))


def run(b: TicketBuilder, steps: Sequence[tuple[float | None, bool]], **kw: object):
    out = []
    for weight, stable in steps:
        w = b.feed(weight, stable=stable, unit="kg", **kw)  # type: ignore[arg-type]
        if w is not None:
            out.append(w)
    return out


TRUCK = [(0.0, True), (3000.0, False), (18000.0, False), (24180.0, False), (24180.0, True)]
LEAVES = [(24180.0, True), (9000.0, False), (0.0, False), (0.0, True)]


def test_one_truck_is_one_weighing() -> None:
    b = builder(tare=11000.0)
    (w,) = run(b, TRUCK + [(24180.0, True)] * 50 + LEAVES)
    assert (w.gross, w.tare, w.net, w.unit, w.material) == (24180.0, 11000.0, 13180.0, "kg", "SAND")
    attrs = dict(w.attrs("bridge-1"))
    assert attrs["net_kg"] == 13180.0
    assert attrs["material"] == "SAND"


def test_rocking_on_the_platform_is_still_one_weighing() -> None:
    rocking = [(24100.0, False), (24180.0, True), (24300.0, False), (24180.0, True)] * 5
    assert len(run(builder(), TRUCK + rocking + LEAVES)) == 1


def test_two_trucks_two_weighings() -> None:
    assert len(run(builder(), TRUCK + LEAVES + TRUCK + LEAVES)) == 2


def test_a_load_seen_only_stable_is_weighed() -> None:
    """A polled scale may never see the motion: the load arriving counts as motion."""
    assert len(run(builder(), [(0.0, True), (20000.0, True), (0.0, True)])) == 1


def test_below_threshold_or_empty_makes_nothing() -> None:
    assert run(builder(), [(0.0, True), (400.0, False), (450.0, True), (0.0, True)]) == []


def test_stable_count_and_overload_interrupting_it() -> None:
    b = builder(stable_count=3)
    steps = [(20000.0, False), (20000.0, True), (20000.0, True), (None, False)]
    steps += [(20000.0, True), (20000.0, True)]
    assert run(b, steps) == []
    assert len(run(b, [(20000.0, True)])) == 1


def test_hysteresis_between_empty_and_threshold() -> None:
    b = builder(empty_below=100.0)
    steps = TRUCK + [(300.0, False), (24180.0, True)]  # dipped, never empty: same load
    assert len(run(b, steps)) == 1


def test_material_from_the_instruments_code() -> None:
    b = builder(material="", material_group="code", materials={"07": "CLINKER"})
    (w,) = run(b, TRUCK, code="07")
    assert w.material == "CLINKER"
    (w,) = run(b, LEAVES + TRUCK, code="99")
    assert w.material == "99"


def test_tare_from_the_instrument_wins() -> None:
    (w,) = run(builder(tare=1.0), TRUCK, tare=10000.0)
    assert w.net == 14180.0


def test_units_other_than_kg() -> None:
    b = builder(threshold=0.5)
    w = None
    for weight, stable in [(0.0, True), (24.18, False), (24.18, True)]:
        w = b.feed(weight, stable=stable, unit="t") or w
    assert w is not None
    assert dict(w.attrs("x"))["net_kg"] == 24180.0


def test_config_problems() -> None:
    cfg = msgspec.convert({"threshold": 10.0, "weight": "mass"}, TicketConfig)
    problems = ticket_problems(cfg, {"weight"}, {"weight"}, "t")
    assert any("t.weight" in p for p in problems)
    assert any("material" in p for p in problems)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"threshold": 0}, TicketConfig)
