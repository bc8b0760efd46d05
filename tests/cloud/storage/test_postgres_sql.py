"""The text the PostgreSQL store sends: array literals, COPY lines, the call's parameters.

Byte vectors here; that PostgreSQL reads them back exactly is the storage suite's job
(test_awkward_names_values_and_attributes_round_trip_exactly).
"""

from __future__ import annotations

from cloud.storage.postgres_sql import (
    INGEST_CALL,
    call_params,
    copy_text,
    number_array,
    text_array,
)
from tests.cloud.helpers import START_MS, Gateway
from wire.models import GENESIS, Event, Quality


def test_number_arrays():
    assert number_array([]) == "{}"
    assert number_array([1, None, 2.5, 1e16, -0.0, 5e-324, Quality.GOOD]) == (
        "{1,NULL,2.5,1e+16,-0.0,5e-324,0}"
    )


def test_text_arrays_quote_every_element():
    assert text_array([]) == "{}"
    assert text_array(["a", "", "NULL", "{x,y}", 'say "hi"', "back\\slash", " "]) == (
        '{"a","","NULL","{x,y}","say \\"hi\\"","back\\\\slash"," "}'
    )


def test_copy_text():
    assert copy_text([(1, 2, 0.1, 0), (3, 4, 1e16, 6)]) == "1\t2\t0.1\t0\n3\t4\t1e+16\t6\n"


def test_call_params_match_the_statement():
    gw = Gateway("gw-1")
    frozen = gw.build(
        1,
        GENESIS,
        n_readings=6,
        n_series=2,
        events=[Event("ticket", START_MS, (("lot", "A"),))],
        config_version="aaaa",
    )
    params = call_params(gw.meta(frozen), frozen.batch, [7, None])
    assert len(params) == INGEST_CALL.count("%s")
    known, metrics, readings_series, ts_ms = params[16], params[17], params[23], params[24]
    assert (known, metrics) == ("{7,NULL}", '{"power_00","power_01"}')
    assert readings_series == "{1,1,1,2,2,2}"
    assert ts_ms == number_array([t for s in frozen.batch.series for t in s.ts_ms])
    assert params[27:31] == ('{"ticket"}', f"{{{START_MS}}}", "{0}", '{"{\\"lot\\": \\"A\\"}"}')
    # provenance: the config version, then the oldest and newest time of readings and events
    assert params[31:] == ("aaaa", START_MS, START_MS + 5000)
