"""Produced vs stored, device by device: the demo's verdict. Pure: data in, results out.

Every stored reading is matched to what a device produced, by an identity each device gives it:

| device      | produced (see demo.devices)         | identity of a stored reading              |
| ----------- | ----------------------------------- | ----------------------------------------- |
| meter       | values served in answered requests  | (metric, ts): two polls differ in ts      |
| mcu         | readings taken, by (boot, seq)      | (channel, value) → the seq that had it    |
| weighbridge | tickets printed                     | event: ticket number; reading: (ts)       |
| mqtt        | messages the broker acknowledged    | (metric, ts): each message has its time   |

- **duplicated**: stored readings beyond the first with the same identity (for the MCU: the same
  seq twice; for the others the same series and timestamp twice);
- **missing**: produced, not stored (for the meter: per metric, values served minus GOOD readings
  stored);
- **unexpected**: stored readings that match nothing produced (a reading made up or mangled).

Only GOOD-or-UNCERTAIN readings count for the meter: a BAD reading is the gateway's explicit "no
answer" marker (the meter is switched off at the end), reported beside the table, never produced.
The verdict is ok when nothing is missing, duplicated or unexpected, and every device produced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from demo.cloud import Point

BAD = 2  # quality code; +4 marks readings taken while the gateway's clock was untrusted


def _bad(p: Point) -> bool:
    return p.quality & 3 == BAD


@dataclass
class DeviceResult:
    device: str
    produced: int
    stored: int
    missing: int = 0
    duplicated: int = 0
    unexpected: int = 0
    produced_as: str = ""  # what the number counts, for people
    notes: list[str] = field(default_factory=list)
    # Losses the run's own faults explain (the soak's kill -9 loss window); 0 in the demo.
    allowed_missing: int = 0

    @property
    def ok(self) -> bool:
        within = self.missing <= self.allowed_missing
        return self.produced > 0 and within and not (self.duplicated or self.unexpected)


def _dups(points: Iterable[Point]) -> int:
    seen = Counter(p.ts_ms for p in points)
    return sum(n - 1 for n in seen.values())


def meter(served: Mapping[str, int], stored: Mapping[str, Sequence[Point]]) -> DeviceResult:
    r = DeviceResult("meter", sum(served.values()), 0)
    bad = 0
    for metric in sorted(set(served) | set(stored)):
        points = stored.get(metric, [])
        good = [p for p in points if not _bad(p)]
        bad += len(points) - len(good)
        unique = len({p.ts_ms for p in good})
        r.stored += len(good)
        r.duplicated += len(good) - unique
        r.missing += max(0, served.get(metric, 0) - unique)
        r.unexpected += max(0, unique - served.get(metric, 0))
    polls = max(served.values(), default=0)
    r.produced_as = f"values served in answered polls (~{polls} polls x {len(served)} points)"
    if bad:
        r.notes.append(
            f"{bad} BAD markers stored: the gateway's explicit 'no answer' for a poll that got"
            " none or a damaged one, or after the meter was switched off (not counted as produced)"
        )
    return r


def mcu(
    taken: Sequence[Sequence[Any]],
    channels: Mapping[int, str],
    stored: Mapping[str, Sequence[Point]],
) -> DeviceResult:
    """`taken`: [boot, seq, channel, value] per reading the firmware took."""
    r = DeviceResult("mcu", len(taken), 0)
    by_value: dict[tuple[int, float], tuple[int, int]] = {}
    for boot, seq, channel, value in taken:
        by_value[(int(channel), float(value))] = (int(boot), int(seq))
    counts: Counter[tuple[int, int]] = Counter()
    for channel, metric in channels.items():
        for p in stored.get(metric, []):
            r.stored += 1
            position = by_value.get((channel, p.value))
            if position is None:
                r.unexpected += 1
            else:
                counts[position] += 1
    r.duplicated = sum(n - 1 for n in counts.values() if n > 1)
    missing = sorted({(int(b), int(s)) for b, s, _c, _v in taken} - set(counts))
    r.missing = len(missing)
    seqs = [int(t[1]) for t in taken]
    r.produced_as = f"readings taken, seq {min(seqs)}..{max(seqs)}" if seqs else "readings taken"
    if missing:
        shown = ", ".join(f"{b}/{s}" for b, s in missing[:10])
        r.notes.append(f"missing boot/seq: {shown}{' …' if len(missing) > 10 else ''}")
    return r


def weighbridge(
    printed: Sequence[Sequence[Any]], events: Sequence[Mapping[str, Any]], net: Sequence[Point]
) -> DeviceResult:
    """`printed`: [ticket, material, lot, net_kg] per ticket line written to the port. Each
    ticket must arrive as one event and one `net_mass` reading: 2 per ticket."""
    tickets = Counter(int(e["attrs"].get("ticket", -1)) for e in events)
    numbers = {int(t[0]) for t in printed}
    r = DeviceResult("weighbridge", 2 * len(printed), len(events) + len(net))
    r.produced_as = f"{len(printed)} tickets printed, each an event + a reading"
    r.duplicated = sum(n - 1 for n in tickets.values() if n > 1) + _dups(net)
    r.missing = len(numbers - set(tickets)) + max(0, len(printed) - len({p.ts_ms for p in net}))
    r.unexpected = sum(n for t, n in tickets.items() if t not in numbers) + max(
        0, len({p.ts_ms for p in net}) - len(printed)
    )
    want_mass = Counter(float(t[3]) for t in printed)
    got_mass = Counter(p.value for p in net)
    if not r.duplicated and want_mass != got_mass:
        r.notes.append("net masses stored differ from the tickets printed")
        r.unexpected += sum((got_mass - want_mass).values())
    return r


def mqtt(acked: Sequence[Sequence[Any]], stored: Mapping[str, Sequence[Point]]) -> DeviceResult:
    """`acked`: [metric, ts_ms, value] per reading in a message the broker acknowledged."""
    produced = {(str(m), int(ts)) for m, ts, _v in acked}
    got: Counter[tuple[str, int]] = Counter(
        (metric, p.ts_ms) for metric, points in stored.items() for p in points
    )
    r = DeviceResult("mqtt", len(acked), sum(got.values()))
    r.produced_as = f"{len(acked) // 2} messages acknowledged by the broker, 2 readings each"
    r.duplicated = sum(n - 1 for n in got.values() if n > 1)
    r.missing = len(produced - set(got))
    r.unexpected = len(set(got) - produced)
    return r


def judge(
    report: Mapping[str, Any],
    stored: Mapping[str, Mapping[str, Sequence[Point]]],
    events: Sequence[Mapping[str, Any]],
    mcu_channels: Mapping[int, str],
    skipped: dict[str, str],
    chain: dict[str, Any],
    *,
    drained: bool,
) -> Verdict:
    """The verdict from the devices' report (`demo.devices`) and what the receiver holds:
    `stored[device][metric]` readings, `events` the weighbridge tickets."""
    results = [
        meter(report["meter"]["served"], stored["meter"]),
        mcu(report["mcu"]["readings"], mcu_channels, stored["mcu"]),
        weighbridge(
            report["weighbridge"]["printed"], events, stored["weighbridge"].get("net_mass", [])
        ),
    ]
    if "mqtt" in report:
        results.append(mqtt(report["mqtt"]["acked"], stored["mqtt"]))
    return Verdict(results, skipped, chain, drained, 0.0)


@dataclass
class Verdict:
    devices: list[DeviceResult]
    skipped: dict[str, str]
    chain: dict[str, Any]
    drained: bool
    seconds: float

    @property
    def ok(self) -> bool:
        chain_ok = not (
            self.chain.get("gaps") or self.chain.get("forks") or self.chain.get("dropped")
        )
        return self.drained and chain_ok and all(d.ok for d in self.devices)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": self.seconds,
            "drained": self.drained,
            "devices": {d.device: asdict(d) | {"ok": d.ok} for d in self.devices},
            "skipped": self.skipped,
            "chain": self.chain,
            "lost": sum(d.missing for d in self.devices),
            "duplicated": sum(d.duplicated for d in self.devices),
            "unexpected": sum(d.unexpected for d in self.devices),
        }

    def lines(self) -> list[str]:
        head = f"{'device':<12} {'produced':>9} {'stored':>7} {'missing':>8} {'duplicated':>11}"
        out = [head, "-" * len(head)]
        for d in self.devices:
            extra = f"  unexpected {d.unexpected}" if d.unexpected else ""
            mark = "ok" if d.ok else "FAIL"
            out.append(
                f"{d.device:<12} {d.produced:>9} {d.stored:>7} {d.missing:>8} {d.duplicated:>11}"
                f"  {mark}{extra}   ({d.produced_as})"
            )
            out += [f"{'':<12} {note}" for note in d.notes]
        for name, why in self.skipped.items():
            out.append(f"{name:<12} skipped: {why}")
        total = [sum(getattr(d, k) for d in self.devices) for k in ("produced", "stored")]
        lost = sum(d.missing for d in self.devices)
        dup = sum(d.duplicated for d in self.devices)
        out.append("-" * len(head))
        out.append(f"{'total':<12} {total[0]:>9} {total[1]:>7} {lost:>8} {dup:>11}")
        c = self.chain
        out.append(
            f"receiver: {c.get('batches', 0)} batches, chain gaps {c.get('gaps', 0)}, forks "
            f"{c.get('forks', 0)}, readings the gateway reported dropped {c.get('dropped', 0)}"
        )
        if not self.drained:
            out.append(
                "the gateway's buffer was not drained: readings still in it count as missing "
                "here (they are not lost: the agent keeps them and sends them when it runs again)"
            )
        idle = [d.device for d in self.devices if d.produced == 0]
        if idle:
            out.append(f"produced nothing: {', '.join(idle)} (run longer)")
        allowed = sum(min(d.missing, d.allowed_missing) for d in self.devices)
        if self.ok and allowed:
            out.append(
                f"result: nothing duplicated; {allowed} lost, all within the loss window of the "
                "faults injected"
            )
        elif self.ok:
            out.append("result: nothing lost, nothing duplicated")
        elif not self.drained and not dup and not sum(d.unexpected for d in self.devices):
            out.append(
                f"result: not checked — {lost} readings may still be in the gateway's buffer"
            )
        else:
            out.append(
                f"result: FAILED — {lost} lost, {dup} duplicated, "
                f"{sum(d.unexpected for d in self.devices)} unexpected"
            )
        return out
