"""Forecast accuracy metrics: MASE, sMAPE and interval coverage (definitions in REFERENCES)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["mase", "smape", "coverage", "naive_scale"]


def mase(errors: pd.DataFrame, scale: pd.Series) -> float:
    """Mean over (item, cutoff) of MAE / in-sample seasonal-naive MAE; zero scales are skipped."""
    mae = errors.groupby(["unique_id", "cutoff"])["abs_error"].mean()
    scale = scale.reindex(mae.index)
    ok = scale.to_numpy() > 0
    return float(np.mean(mae.to_numpy()[ok] / scale.to_numpy()[ok])) if ok.any() else float("nan")


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    denom = np.abs(actual) + np.abs(forecast)
    terms = np.divide(
        2 * np.abs(actual - forecast), denom, out=np.zeros_like(denom, dtype=float), where=denom > 0
    )
    return float(100 * terms.mean())


def coverage(actual: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    return float(np.mean((actual >= low) & (actual <= high)))


def naive_scale(series: pd.DataFrame, cutoffs: pd.DataFrame, season_length: int) -> pd.Series:
    """In-sample mean |y_t - y_(t-m)| of each item's history up to each cutoff."""
    s = series.sort_values(["unique_id", "ds"])
    diff = (s["y"] - s.groupby("unique_id")["y"].shift(season_length)).abs()
    s = s.assign(d=diff.fillna(0.0), n=diff.notna().astype(float))
    s["cum_d"] = s.groupby("unique_id")["d"].cumsum()
    s["cum_n"] = s.groupby("unique_id")["n"].cumsum()
    at = cutoffs.merge(s, left_on=["unique_id", "cutoff"], right_on=["unique_id", "ds"], how="left")
    scale = np.where(at["cum_n"] > 0, at["cum_d"] / at["cum_n"].where(at["cum_n"] > 0, 1), 0.0)
    return pd.Series(scale, index=pd.MultiIndex.from_frame(at[["unique_id", "cutoff"]]))
