"""Segment breakdowns with the correction across every cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from experiments.ab.analysis import compare_means
from experiments.ab.segments import segment_breakdown, unit_segments


def make_units(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    variant = np.where(rng.random(n) < 0.5, "control", "treatment")
    new = rng.random(n) < 0.5
    # The treatment lifts conversion of new shoppers only (0.10 -> 0.20).
    p = np.where(new & (variant == "treatment"), 0.20, 0.10)
    converted = (rng.random(n) < p).astype(float)
    units = pd.DataFrame(
        {
            "variant": variant,
            "converted": converted,
            "purchases": converted,
            "revenue": converted * 100,
            "clicks": converted,
            "exposures": 1,
        },
        index=pd.Index([f"u{i}" for i in range(n)], name="unit_id"),
    )
    segments = pd.DataFrame(
        {
            "new_vs_returning": np.where(new, "new", "returning"),
            "fulfillment": np.where(rng.random(n) < 0.99, "bonded", "direct_mail"),
        },
        index=units.index,
    )
    return units, segments


def test_breakdown_finds_the_segment_and_corrects_across_cells():
    units, segments = make_units()
    out = segment_breakdown(units, segments, metrics=["conversion"], control="control")
    cells = {(c["segment"], c["level"]): c for c in out["cells"]}
    assert not cells["fulfillment", "direct_mail"]["tested"]  # about 40 units: too few per arm
    assert out["tests"] == 3
    new, returning = cells["new_vs_returning", "new"], cells["new_vs_returning", "returning"]
    assert new["significant"] and new["abs_lift"] == pytest.approx(0.1, abs=0.03)
    assert not returning["significant"]
    # by hand: the same Welch test inside the segment, then Holm over the three tested cells
    mask = (segments["new_vs_returning"] == "new").to_numpy()
    part = units[mask]
    raw = compare_means(
        part.loc[part.variant == "treatment", "converted"].to_numpy(),
        part.loc[part.variant == "control", "converted"].to_numpy(),
    )["p_value"]
    assert new["p_value"] == pytest.approx(raw)
    tested = [c for c in out["cells"] if c["tested"]]
    expected = multipletests([c["p_value"] for c in tested], method="holm")[1]
    assert [c["p_adjusted"] for c in tested] == pytest.approx(list(expected))


def test_segments_come_from_the_event_log():
    events = pd.DataFrame(
        {"experiment": "e", "unit_id": ["a", "a", "b"], "price_level": [None, "high", "low"]}
    )
    seg = unit_segments(events, "e", ["price_level"])
    assert seg.loc["a", "price_level"] == "high" and seg.loc["b", "price_level"] == "low"
    with pytest.raises(ValueError, match="not in the event log"):
        unit_segments(events, "e", ["fulfillment"])
