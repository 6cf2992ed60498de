"""Offline evaluation of demand forecasters on any sales history, with a rolling-origin split.

Protocol: sales lines are summed per item and period (returns net out; a period whose returns exceed its
sales counts as zero demand); each item's series runs from its first sale to the last period of the file,
with zeros where nothing sold. The last `n_windows * horizon` periods form `n_windows` consecutive test
windows; for each, every model is refit on everything before the window's cutoff and forecasts `horizon`
periods. Items whose history before the first cutoff is shorter than `min_train` periods are left out
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

from models.forecast import (
    ENSEMBLE_MEMBERS,
    FORECASTERS,
    add_ensemble,
    interval_columns,
    make_forecasters,
    season_length_for,
)

__all__ = ["demand_series", "evaluate_forecasters", "mase", "smape", "coverage", "normalise_freq"]

#: pandas renamed period-end aliases; accept the short forms people type.
_FREQ_ALIASES = {"M": "ME", "Q": "QE", "Y": "YE", "A": "YE", "H": "h"}


def normalise_freq(freq: str) -> str:
    head, _, anchor = freq.partition("-")
    head = _FREQ_ALIASES.get(head, head)
    try:
        pd.tseries.frequencies.to_offset(head + (f"-{anchor}" if anchor else ""))
    except ValueError as exc:
        raise ValueError(f"unknown frequency {freq!r} (use D, W, M, Q or a pandas alias)") from exc
    return head + (f"-{anchor}" if anchor else "")


def demand_series(sales: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Demand per item and period as statsforecast's long frame (`unique_id`, `ds`, `y`), zero-filled."""
    if sales.empty:
        raise ValueError("no sales rows to forecast from")
    freq = normalise_freq(freq)
    ts = sales["ts"].dt.tz_convert("UTC").dt.tz_localize(None) if sales["ts"].dt.tz else sales["ts"]
    frame = pd.DataFrame({"unique_id": sales["item_id"].astype(str), "ts": ts, "q": sales["quantity"]})
    per_period = frame.groupby(["unique_id", pd.Grouper(key="ts", freq=freq)])["q"].sum()
    wide = per_period.unstack("ts")
    periods = pd.date_range(wide.columns.min(), wide.columns.max(), freq=freq)
    wide = wide.reindex(columns=periods)
    started = wide.notna().cummax(axis=1).to_numpy()
    values = np.clip(wide.fillna(0.0).to_numpy(), 0.0, None)
    item_idx, period_idx = np.nonzero(started)
    return pd.DataFrame(
        {
            "unique_id": wide.index.to_numpy()[item_idx],
            "ds": periods[period_idx],
            "y": values[item_idx, period_idx].astype("float64"),
        }
    )


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


def _naive_scale(series: pd.DataFrame, cutoffs: pd.DataFrame, season_length: int) -> pd.Series:
    """In-sample mean |y_t - y_(t-m)| of each item's history up to each cutoff."""
    s = series.sort_values(["unique_id", "ds"])
    diff = (s["y"] - s.groupby("unique_id")["y"].shift(season_length)).abs()
    s = s.assign(d=diff.fillna(0.0), n=diff.notna().astype(float))
    s["cum_d"] = s.groupby("unique_id")["d"].cumsum()
    s["cum_n"] = s.groupby("unique_id")["n"].cumsum()
    at = cutoffs.merge(s, left_on=["unique_id", "cutoff"], right_on=["unique_id", "ds"], how="left")
    scale = np.where(at["cum_n"] > 0, at["cum_d"] / at["cum_n"].where(at["cum_n"] > 0, 1), 0.0)
    return pd.Series(scale, index=pd.MultiIndex.from_frame(at[["unique_id", "cutoff"]]))


def evaluate_forecasters(
    series: pd.DataFrame,
    names: list[str],
    *,
    freq: str,
    horizon: int,
    n_windows: int = 3,
    min_train: int | None = None,
    season_length: int | None = None,
    n_jobs: int = 1,
) -> tuple[list[dict], dict]:
    """Rolling-origin evaluation; returns one metrics row per model and a summary of the data used."""
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
    cv, seconds = None, {}
    # conformal intervals need whole horizons of in-sample history: as many as fit, 2 to 5
    conformal_windows = int(np.clip((train_len - 1) // horizon, 2, 5))
    for model in make_forecasters(names, m, horizon, conformal_windows):
        started = time.perf_counter()
        part = StatsForecast(models=[model], freq=freq, n_jobs=n_jobs).cross_validation(
            df=used, h=horizon, n_windows=n_windows, step_size=horizon, level=[80]
        )
        seconds[model.alias] = time.perf_counter() - started
        part = part.reset_index() if "unique_id" not in part.columns else part
        cv = part if cv is None else cv.merge(part.drop(columns="y"), on=["unique_id", "ds", "cutoff"])
    if "ensemble" in names:
        cv = add_ensemble(cv)
        seconds["ensemble"] = sum(seconds[member] for member in ENSEMBLE_MEMBERS)
    scale = _naive_scale(used, cv[["unique_id", "cutoff"]].drop_duplicates(), m)
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
