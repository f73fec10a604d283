"""All 13 VIFB metrics for its 105 published fused images vs the MATLAB values."""

from __future__ import annotations

import pytest

from mmaif.evaluation.reference import VIFB_COLUMNS, metric_deviations

from .conftest import VIFB, need

TOLERANCE = 1e-4  # the table has 5 significant digits (rounding alone gives up to 5e-5)


@pytest.mark.slow
def test_all_vifb_metrics_match_matlab():
    rows = list(metric_deviations(need(VIFB)))
    assert len(rows) == 105 * 13
    bad = [r for r in rows if not r[5] <= TOLERANCE]
    worst = {col: max(r[5] for r in rows if r[2] == col) for col in VIFB_COLUMNS}
    assert not bad, f"{len(bad)} values off, e.g. {bad[:5]}; worst per metric {worst}"
