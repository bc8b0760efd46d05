"""OPC UA status codes to quality (OPC 10000-4, 7.39): severity bits, flags ignored."""

from __future__ import annotations

import pytest

from agent.sources.opcua import status
from wire.models import Quality


@pytest.mark.parametrize(
    ("code", "quality", "key"),
    [
        (0x00000000, Quality.GOOD, "0x00000000"),  # Good
        (0x00000400, Quality.GOOD, "0x00000000"),  # Good with the info type bit: flags only
        (0x00A30000, Quality.GOOD, "0x00A30000"),  # GoodClamped
        (0x40000000, Quality.UNCERTAIN, "0x40000000"),  # Uncertain
        (0x408F0000, Quality.UNCERTAIN, "0x408F0000"),  # UncertainLastUsableValue
        (0x40910480, Quality.UNCERTAIN, "0x40910000"),  # UncertainSensorNotAccurate + limit
        (0x80000000, Quality.BAD, "0x80000000"),  # Bad
        (0x80340000, Quality.BAD, "0x80340000"),  # BadNodeIdUnknown
        (0x808A0000, Quality.BAD, "0x808A0000"),  # BadWaitingForInitialData
        (0xC0000000, Quality.BAD, "0xC0000000"),  # reserved severity: not trusted
    ],
)
def test_severity_is_the_quality_and_the_condition_is_the_counter(code, quality, key):
    assert status.quality(code) is quality
    assert status.counter_key(code) == key


def test_the_missing_node_codes_are_bad():
    assert all(status.quality(code) is Quality.BAD for code in status.NODE_MISSING)


@pytest.mark.parametrize(
    ("code", "overflowed"),
    [
        (0x00000000, False),
        (0x00000480, True),  # Good, InfoType DataValue, Overflow
        (0x408F0480, True),
        (0x00000080, False),  # the bit means nothing without InfoType DataValue
        (0x00000400, False),
        (0x00000C80, False),  # InfoType 11 is reserved
    ],
)
def test_a_queue_overflow_is_told_by_the_info_bits(code, overflowed):
    assert status.overflowed(code) is overflowed
