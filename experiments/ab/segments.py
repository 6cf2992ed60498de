"""Segment breakdowns: the lift inside each segment (new vs returning shoppers, bonded vs direct mail,
price level, ...), with the p-values corrected across every cell of the breakdown.

Segments are unit-level columns of the event log (the first non-null value per unit); docs/experiments.md
names the standard ones. Many cells mean many tests, so the correction (Holm by default, or
Benjamini-Hochberg) runs over all segment x level x treatment x metric cells together; a cell with fewer
than `min_units` units per arm is reported without a test.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from statsmodels.stats.multitest import multipletests

from experiments.ab.analysis import CORRECTIONS, METRICS, compare_means, compare_ratios

STANDARD_SEGMENTS = ("new_vs_returning", "fulfillment", "price_level")


def unit_segments(events: pd.DataFrame, experiment: str, columns: Sequence[str]) -> pd.DataFrame:
    """unit_id -> the unit's value of each segment column (first non-null in the log)."""
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise ValueError(f"segment columns {missing} are not in the event log")
    ev = events[events["experiment"] == experiment]
    return ev.assign(unit_id=ev["unit_id"].astype(str)).groupby("unit_id")[list(columns)].first()


def segment_breakdown(
    units: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    metrics: Sequence[str],
    control: str,
    alpha: float = 0.05,
    correction: str = "holm",
    min_units: int = 30,
) -> dict:
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}")
    table = units.join(segments, how="left")
    cells = []
    for column in segments.columns:
        for level, part in table.groupby(table[column].fillna("unknown").astype(str)):
            for treatment in sorted(set(part["variant"]) - {control}):
                t = part[part["variant"] == treatment]
                c = part[part["variant"] == control]
                for metric in metrics:
                    kind, num, den = METRICS[metric]
                    cell = {
                        "segment": column,
                        "level": level,
                        "treatment": treatment,
                        "metric": metric,
                        "units": [int(len(c)), int(len(t))],
                    }
                    if min(len(t), len(c)) < min_units:
                        cell["tested"] = False
                    elif kind == "ratio":
                        cell.update(compare_ratios(t[num], t[den], c[num], c[den], alpha), tested=True)
                    else:
                        cell.update(
                            compare_means(t[num].to_numpy(float), c[num].to_numpy(float), alpha), tested=True
                        )
                    cells.append(cell)
    tested = [c for c in cells if c["tested"]]
    if tested:
        reject, adjusted, _, _ = multipletests(
            [c["p_value"] for c in tested], alpha=alpha, method=CORRECTIONS[correction]
        )
        for c, rej, p in zip(tested, reject, adjusted, strict=True):
            c["p_adjusted"], c["significant"] = float(p), bool(rej)
    return {"correction": correction, "tests": len(tested), "cells": cells}
