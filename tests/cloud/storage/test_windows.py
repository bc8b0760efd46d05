"""The figures' window queries (`cloud.storage.windows`): SQL text only; the rows they read are
tested through the figures API in tests/cloud/apps/test_figures.py."""

from __future__ import annotations

import pytest

from cloud.storage.windows import probe_sql, rollup_sql, window_sql


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_probe_sql_mentions_only_placeholders(kind) -> None:
    for sql in (
        window_sql(kind, 3),
        rollup_sql(kind, 3),
        probe_sql(kind, 3, before=True),
        probe_sql(kind, 3, before=False),
    ):
        assert not {"'", '"'} & set(sql)
