"""Offline evaluation of demand forecasters on any sales history, with a rolling-origin split.

Protocol: demand per item and period as `features.sales.demand_series` builds it. The last
`n_windows * horizon` periods form `n_windows` consecutive test windows; for each, every model is refit on
everything before the window's cutoff and forecasts `horizon` periods. Items whose history before the
first cutoff is shorter than `min_train` periods are left out
(and counted).

Metrics (over every item and window): MASE, the mean over (item, window) of the forecast's mean absolute
error divided by the in-sample mean absolute error of the seasonal naive forecast up to the cutoff
(items whose in-sample error is zero are skipped: nothing to scale by); sMAPE in percent (0-200, a point
where actual and forecast are both zero counts as 0); coverage@80, the share of actual values inside the
80% prediction interval.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from experiments.forecast_metrics import coverage, mase, naive_scale, smape
from features.sales import normalise_freq
from models.forecast import (
    CALENDAR_AWARE,
    ENSEMBLE_MEMBERS,
    FORECASTERS,
    STATISTICAL,
    add_ensemble,
    interval_columns,
    make_forecasters,
    season_length_for,
)
from models.forecast.calendar_model import calendar_frame
from models.forecast.global_model import forecast_frame

__all__ = ["evaluate_forecasters"]

#: The models that take the event calendar, each refit from every origin on the history up to it.
_CALENDAR_FORECASTS = {"lightgbm": forecast_frame, "calendar_level": calendar_frame}


def evaluate_forecasters(
    series: pd.DataFrame,
    names: list[str],
    *,
    freq: str,
    horizon: int,
    n_windows: int = 3,
    min_train: int | None = None,
    season_length: int | None = None,
    event_windows=(),
    n_jobs: int = 1,
) -> tuple[list[dict], dict]:
    """Rolling-origin evaluation; returns one metrics row per model and a summary of the data used.

    `event_windows`: known (start, end) promotion periods, for the models that use a calendar."""
    from statsforecast import StatsForecast

    if horizon < 1 or n_windows < 1:
        raise ValueError("horizon and n_windows must be at least 1")
    names = list(dict.fromkeys(names))
    unknown = sorted(set(names) - set(FORECASTERS))
    if unknown:
        raise ValueError(f"unknown forecaster(s) {unknown}; choose from {list(FORECASTERS)}")
    freq = normalise_freq(freq)
    test_len = n_windows * horizon
    if min_train is not None and min_train <= 2 * horizon:
        raise ValueError(f"min_train must exceed 2 x horizon ({2 * horizon}) for the interval models")
    min_train = min_train if min_train is not None else max(2 * horizon + 1, 8)
    lengths = series.groupby("unique_id").size()
    keep = lengths[lengths >= test_len + min_train].index
    if len(keep) == 0:
        raise ValueError(
            f"no item has {test_len + min_train} periods of history ({min_train} to train plus "
            f"{n_windows} windows of {horizon}); use a finer --freq, a shorter --horizon or more data"
        )
    used = series[series["unique_id"].isin(keep)]
    train_len = int(lengths[keep].min()) - test_len
    m = season_length if season_length is not None else season_length_for(freq, train_len)
    summary = {
        "n_series": int(len(keep)),
        "n_series_too_short": int(len(lengths) - len(keep)),
        "season_length": int(m),
        "n_windows": int(n_windows),
        "horizon": int(horizon),
        "freq": freq,
    }
    # conformal intervals need whole horizons of in-sample history: as many as fit, 2 to 5
    conformal_windows = int(np.clip((train_len - 1) // horizon, 2, 5))
    periods = np.sort(used["ds"].unique())
    cutoffs = [periods[len(periods) - test_len - 1 + k * horizon] for k in range(n_windows)]
    cv, seconds = None, {}
    statistical = [name for name in names if name in STATISTICAL]
    for model in make_forecasters(statistical, m, horizon, conformal_windows) if statistical else []:
        started = time.perf_counter()
        part = StatsForecast(models=[model], freq=freq, n_jobs=n_jobs).cross_validation(
            df=used, h=horizon, n_windows=n_windows, step_size=horizon, level=[80]
        )
        seconds[model.alias] = time.perf_counter() - started
        part = part.reset_index() if "unique_id" not in part.columns else part
        cv = part if cv is None else cv.merge(part.drop(columns="y"), on=["unique_id", "ds", "cutoff"])
    for name in (name for name in names if name in CALENDAR_AWARE):
        started = time.perf_counter()
        parts = []
        for cutoff in cutoffs:
            history = used[used["ds"] <= cutoff]  # the fit sees nothing after the origin
            part = _CALENDAR_FORECASTS[name](history, freq, horizon, m, event_windows).assign(cutoff=cutoff)
            parts.append(part.merge(used, on=["unique_id", "ds"]))
        part = pd.concat(parts, ignore_index=True)
        seconds[name] = time.perf_counter() - started
        cv = part if cv is None else cv.merge(part.drop(columns="y"), on=["unique_id", "ds", "cutoff"])
    if "ensemble" in names:
        cv = add_ensemble(cv)
        seconds["ensemble"] = sum(seconds[member] for member in ENSEMBLE_MEMBERS)
    scale = naive_scale(used, cv[["unique_id", "cutoff"]].drop_duplicates(), m)
    rows = []
    actual = cv["y"].to_numpy(dtype=float)
    for name in names:
        point = np.clip(cv[name].to_numpy(dtype=float), 0.0, None)
        lo_col, hi_col = interval_columns(name)
        errors = cv[["unique_id", "cutoff"]].assign(abs_error=np.abs(actual - point))
        rows.append(
            {
                "model": name,
                "mase": mase(errors, scale),
                "smape": smape(actual, point),
                "coverage@80": coverage(actual, cv[lo_col].to_numpy(float), cv[hi_col].to_numpy(float)),
                "mae": float(np.mean(np.abs(actual - point))),
                "n_series": summary["n_series"],
                "season_length": summary["season_length"],
                "fit_seconds": round(seconds[name], 3),
            }
        )
    return rows, summary
