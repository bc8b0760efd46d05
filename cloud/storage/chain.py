"""The chain and token decisions both backends make inside their transactions. Pure: no I/O.

Chain rules (docs/protocol.md, section 5), for a batch (seq, prev, digest) against the device's
head (head_seq, head_digest) while the device row is locked:

    seq <= head_seq       look the stored batch up: same digest -> duplicate (write nothing),
                          other digest -> chain_conflict "digest_mismatch"
    seq == head_seq + 1   prev == head_digest -> append; else chain_conflict "prev_mismatch"
    seq >  head_seq + 1   seq_gap, expected_seq = head_seq + 1

Digests are compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import enum
import hmac
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from cloud.storage.batches import BatchMeta, BatchResult, Outcome
from wire.models import Batch, SeriesKey


class Step(enum.Enum):
    APPEND = "append"
    LOOKUP = "lookup"  # seq at or below the head: the stored digest decides
    DONE = "done"  # the result is final (gap or conflict)


@dataclass(frozen=True, slots=True)
class Verdict:
    step: Step
    result: BatchResult | None = None


def classify(head_seq: int, head_digest: bytes, meta: BatchMeta) -> Verdict:
    """The first decision, from the head alone."""
    expected = head_seq + 1
    if meta.seq <= head_seq:
        return Verdict(Step.LOOKUP)
    if meta.seq > expected:
        return Verdict(Step.DONE, BatchResult(Outcome.SEQ_GAP, meta.seq, expected, "gap"))
    if not hmac.compare_digest(meta.prev, head_digest):
        return Verdict(
            Step.DONE,
            BatchResult(Outcome.CHAIN_CONFLICT, meta.seq, expected, "prev_mismatch"),
        )
    return Verdict(Step.APPEND)


def classify_stored(head_seq: int, stored_digest: bytes | None, meta: BatchMeta) -> BatchResult:
    """The decision for seq <= head, given the digest stored under that seq (None if absent)."""
    if stored_digest is not None and hmac.compare_digest(stored_digest, meta.digest):
        return BatchResult(Outcome.DUPLICATE, meta.seq, head_seq + 1)
    return BatchResult(Outcome.CHAIN_CONFLICT, meta.seq, head_seq + 1, "digest_mismatch")


def chain_event_kind(result: BatchResult) -> str:
    return "gap" if result.outcome is Outcome.SEQ_GAP else "fork"


def reading_rows(
    batch: Batch, series_ids: dict[SeriesKey, int]
) -> Iterator[tuple[int, int, float, int]]:
    """(series_id, ts_ms, value, quality) for every reading, series by series."""
    for s in batch.series:
        yield from zip(
            itertools.repeat(series_ids[s.key]), s.ts_ms, s.values, s.quality, strict=False
        )


def series_tuple(device_id: str, key: SeriesKey) -> tuple[str, str, str, str, str, str, str]:
    return (device_id, key.metric, key.unit, key.site, key.area, key.process, key.medium)


class TokenVerdict(enum.Enum):
    CONSUME = "consume"  # valid and unused: use it now
    REPLAY = "replay"  # already used by this very key: answer as before (idempotent enrolment)
    FAIL = "fail"  # wrong secret or device: count a failed attempt
    REFUSE = "refuse"  # used, expired or locked: refuse without counting


@dataclass(frozen=True, slots=True)
class StoredToken:
    token_hash: bytes
    device_id: str
    expires_ms: int
    used_ms: int | None
    used_by_keyid: str | None
    failed_attempts: int


def judge_token(
    stored: StoredToken,
    *,
    token_hash: bytes,
    device_id: str,
    keyid: str,
    now_ms: int,
    max_failures: int,
) -> TokenVerdict:
    """What to do with an enrolment attempt against the token row found by its id."""
    if stored.failed_attempts >= max_failures:
        return TokenVerdict.REFUSE
    # Both comparisons always run, so timing does not tell which part was wrong.
    same_hash = hmac.compare_digest(stored.token_hash, token_hash)
    same_device = hmac.compare_digest(stored.device_id.encode(), device_id.encode())
    if not (same_hash and same_device):
        return TokenVerdict.FAIL
    if stored.used_ms is not None:
        return TokenVerdict.REPLAY if stored.used_by_keyid == keyid else TokenVerdict.REFUSE
    if now_ms >= stored.expires_ms:
        return TokenVerdict.REFUSE
    return TokenVerdict.CONSUME
