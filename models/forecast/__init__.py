"""Demand forecasting: named statistical forecasters (statsforecast) with 80% prediction intervals.

Real retail demand per item and week is mostly intermittent (many zero weeks), so the set mixes
smooth-series models (ETS) with intermittent-demand ones (Croston SBA, IMAPA) and simple averages; the
`ensemble` averages ETS, IMAPA and a 4-period window average, which is usually the safest single choice.
Models without their own interval model get conformal intervals (statsforecast's `ConformalIntervals`).
`lightgbm` is one global model across items (`models.forecast.global_model`), predicting the median;
`calendar_level` is item level x season profile x event lift (`models.forecast.calendar_model`). Both
take a known event calendar (planned promotions) as a future regressor.
"""

from __future__ import annotations

import pandas as pd

FORECASTERS = (
    "seasonal_naive", "naive", "window_average", "auto_ets", "croston_sba", "imapa", "ensemble", "lightgbm",
    "calendar_level",
)  # fmt: skip
#: Forecasters fit on every item at once from each origin, with the event calendar:
#: `lightgbm` (models.forecast.global_model) and `calendar_level` (models.forecast.calendar_model).
CALENDAR_AWARE = ("lightgbm", "calendar_level")
#: Forecasters that statsforecast runs.
STATISTICAL = tuple(name for name in FORECASTERS if name not in CALENDAR_AWARE)
ENSEMBLE_MEMBERS = ("auto_ets", "imapa", "window_average")
#: Natural season length per frequency; used only when the history holds two full seasons.
SEASON_LENGTHS = {"D": 7, "W": 52, "M": 12, "ME": 12, "MS": 12, "Q": 4, "QE": 4, "h": 24, "H": 24}

__all__ = [
    "FORECASTERS",
    "STATISTICAL",
    "CALENDAR_AWARE",
    "ENSEMBLE_MEMBERS",
    "season_length_for",
    "make_forecasters",
    "add_ensemble",
    "interval_columns",
]


def season_length_for(freq: str, min_history: int) -> int:
    """The frequency's natural season if the shortest usable history covers two seasons, else 1."""
    base = freq.split("-")[0].lstrip("0123456789")
    season = SEASON_LENGTHS.get(base, 1)
    return season if min_history >= 2 * season else 1


def make_forecasters(names: list[str], season_length: int, horizon: int, conformal_windows: int = 5) -> list:
    """statsforecast model objects for `names` (ensemble members included once), aliased by name."""
    from statsforecast.models import (
        IMAPA,
        AutoETS,
        CrostonSBA,
        Naive,
        SeasonalNaive,
        WindowAverage,
    )
    from statsforecast.utils import ConformalIntervals

    unknown = sorted(set(names) - set(STATISTICAL))
    if unknown:
        raise ValueError(f"unknown statistical forecaster(s) {unknown}; choose from {list(STATISTICAL)}")
    conformal = ConformalIntervals(h=horizon, n_windows=conformal_windows)
    builders = {
        "seasonal_naive": lambda: SeasonalNaive(season_length=season_length, alias="seasonal_naive"),
        "naive": lambda: Naive(alias="naive"),
        "window_average": lambda: WindowAverage(
            window_size=4, alias="window_average", prediction_intervals=conformal
        ),
        "auto_ets": lambda: AutoETS(season_length=season_length, alias="auto_ets"),
        "croston_sba": lambda: CrostonSBA(alias="croston_sba", prediction_intervals=conformal),
        "imapa": lambda: IMAPA(alias="imapa", prediction_intervals=conformal),
    }
    wanted = []
    for name in names:
        for member in ENSEMBLE_MEMBERS if name == "ensemble" else (name,):
            if member not in wanted:
                wanted.append(member)
    return [builders[name]() for name in wanted]


def interval_columns(name: str, level: int = 80) -> tuple[str, str]:
    return f"{name}-lo-{level}", f"{name}-hi-{level}"


def add_ensemble(frame: pd.DataFrame, level: int = 80) -> pd.DataFrame:
    """Add the `ensemble` forecast: the mean of its members' point forecasts and interval bounds."""
    out = frame.copy()
    lo, hi = interval_columns("ensemble", level)
    out["ensemble"] = frame[list(ENSEMBLE_MEMBERS)].mean(axis=1)
    out[lo] = frame[[interval_columns(m, level)[0] for m in ENSEMBLE_MEMBERS]].mean(axis=1)
    out[hi] = frame[[interval_columns(m, level)[1] for m in ENSEMBLE_MEMBERS]].mean(axis=1)
    return out
