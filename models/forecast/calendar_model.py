"""`calendar_level`: item level x season profile x event lift, a multiplicative baseline for a known calendar.

Why: item-level retail demand is mostly small counts, where the forecast error is dominated by how well
each item's level is estimated; one level over many regular periods, with the shape shared by the whole
market (the weekday or month profile and the lift in promotion events, both estimated on the market's
totals, where they are precise) beats per-item models that must learn the shape from a few noisy counts.
It is the classic retail baseline-times-promotion-lift decomposition, with the planned event calendar as
a known future regressor:

- season profile: per phase of the season (weekday for daily data), the market's regular totals over
  their centred moving average, averaged over the history's seasons;
- level: each item's mean deseasonalised demand over its last regular (non-event) periods, eight
  seasons or horizons of them;
- event lift: the market's deseasonalised demand in the event periods the history holds over its regular
  level before each event (1 when no event has been seen: the first one is then forecast as regular).

Unit sales get the median (what minimises absolute error on counts) and the 10-90% band of a negative
binomial around the expected demand, its overdispersion measured on the last horizon forecast from
before it (Poisson when there is none), the band's tails narrowed while it still holds 80% of that
horizon (whole-number bounds hold more than their nominal share); other quantities the expected demand
and a band from the same residuals.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

#: The level window in multiples of max(season length, horizon): long, because on small counts the
#: noise of a short mean costs more than a slow drift (daily with a weekly season: 56 days). On the demo
#: marketplace's selection weeks (training data, seeds 7 and 11) 56 days beat 14 and 84 and were within
#: 0.3% of 28 (docs/logistics.md).
WINDOW_MULTIPLES = 8
QUANTILES = (0.1, 0.5, 0.9)
#: Tail shares tried for the 80% band of counts, from the nominal 10%.
TAILS = (0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25)

__all__ = ["calendar_level_forecast", "calendar_frame", "event_flags"]


def event_flags(periods: pd.DatetimeIndex, event_windows) -> np.ndarray:
    """1.0 for each period inside a known (start, end) event window (end exclusive), else 0.0."""
    flags = np.zeros(len(periods))
    naive = periods.tz_convert(None) if periods.tz is not None else periods
    for start, end in event_windows:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        start = start.tz_convert(None) if start.tz is not None else start
        end = end.tz_convert(None) if end.tz is not None else end
        flags[(naive >= start) & (naive < end)] = 1.0
    return flags


def _profile(totals: np.ndarray, regular: np.ndarray, m: int) -> np.ndarray:
    """Season factors per phase (mean 1) from the market totals of regular periods; ones when m == 1."""
    if m <= 1:
        return np.ones(1)
    series = pd.Series(np.where(regular, totals, np.nan))
    trend = series.rolling(m, center=True, min_periods=max(1, m // 2)).mean().to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ratio = series.to_numpy() / trend
        phase = np.arange(len(totals)) % m
        keep = np.isfinite(ratio)
        keep[: max(0, len(totals) - 8 * m)] = False  # the latest eight seasons
        factors = np.array([np.nanmean(ratio[keep & (phase == k)]) if (keep & (phase == k)).any() else 1.0
                            for k in range(m)])  # fmt: skip
    factors = np.where(np.isfinite(factors) & (factors > 0), factors, 1.0)
    return factors / factors.mean()


def _expected(Y: np.ndarray, event: np.ndarray, horizon: int, m: int, window: int) -> np.ndarray:
    """Expected demand (items x horizon) after the last period of `Y`, the level over `window` regular
    periods."""
    T = Y.shape[1]
    on = np.asarray(event[:T]) > 0
    totals = np.nansum(Y, axis=0)
    factors = _profile(totals, ~on, m)
    phase = np.arange(T + horizon) % m if m > 1 else np.zeros(T + horizon, dtype=int)
    deseason = Y / factors[phase[:T]][None, :]
    regular = np.where(~on)[0]
    recent = regular[-window:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # items not on sale in the window: NaN rows
        level = np.nanmean(deseason[:, recent], axis=1) if len(recent) else np.full(Y.shape[0], np.nan)
        fallback = np.nanmean(deseason, axis=1)
    level = np.nan_to_num(np.where(np.isnan(level), fallback, level))
    market = totals / factors[phase[:T]]
    lift = 1.0
    if on.any() and len(regular):
        ratios = []
        for t in np.where(on)[0]:
            before = regular[regular < t][-window:]
            if len(before):
                ratios.append(market[t] / max(market[before].mean(), 1e-9))
        lift = float(np.mean(ratios)) if ratios else 1.0
    targets = np.arange(T, T + horizon)
    shape = factors[phase[targets]] * np.where(np.asarray(event[T : T + horizon]) > 0, lift, 1.0)
    return level[:, None] * shape[None, :]


def calendar_level_forecast(
    Y: np.ndarray, event: np.ndarray | None, horizon: int, season_length: int = 1, counts: bool = True
) -> np.ndarray:
    """items x horizon x 3: the 10%, 50% and 90% quantiles of demand after the last period of `Y` (items
    x periods, NaN before an item's first period). `event`: 1 per period inside a known event window,
    covering the history and the horizon (None: no calendar)."""
    from scipy import stats

    Y = np.asarray(Y, dtype=float)
    T = Y.shape[1]
    event = np.zeros(T + horizon) if event is None else np.asarray(event, dtype=float)
    if len(event) < T + horizon:
        raise ValueError("the event calendar must cover the history and the forecast horizon")
    m = max(1, int(season_length))
    window = WINDOW_MULTIPLES * max(m, horizon)
    mu = np.maximum(_expected(Y, event, horizon, m, window), 0.0)
    # the spread around the expected demand: the last horizon's regular periods, forecast from before it
    actual, fitted = np.empty(0), np.empty(0)
    if T > 2 * horizon:
        regular = np.asarray(event[T - horizon : T]) == 0
        guess = np.maximum(_expected(Y[:, : T - horizon], event, horizon, m, window), 0.0)
        actual, fitted = Y[:, T - horizon :][:, regular].ravel(), guess[:, regular].ravel()
        keep = np.isfinite(actual)
        actual, fitted = actual[keep], fitted[keep]
    if counts:
        # negative binomial, var = mu + alpha mu^2, alpha by moments on those residuals (0: Poisson); real
        # retail counts are overdispersed, so Poisson bands would be too narrow
        alpha = 0.0
        if len(actual) and np.sum(fitted**2) > 0:
            alpha = max(0.0, float(np.sum((actual - fitted) ** 2 - fitted) / np.sum(fitted**2)))

        def quantiles(rate: np.ndarray, levels) -> list[np.ndarray]:
            rate = np.maximum(rate, 1e-12)
            if alpha < 1e-6:
                return [stats.poisson.ppf(q, rate) for q in levels]
            size = 1.0 / alpha
            return [stats.nbinom.ppf(q, size, size / (size + rate)) for q in levels]

        # whole-number bounds hold more than their nominal share (small counts most): the band's tail
        # share is the largest that still holds 80% of the back-tested actuals
        tail = TAILS[0]
        for candidate in TAILS[1:] if len(actual) else ():
            lo, hi = quantiles(fitted, (candidate, 1 - candidate))
            if np.mean((actual >= lo) & (actual <= hi)) < 0.8:
                break
            tail = candidate
        return np.stack(quantiles(mu, (tail, 0.5, 1 - tail)), axis=-1)
    resid = actual - fitted
    lo_q, hi_q = np.quantile(resid, [QUANTILES[0], QUANTILES[-1]]) if len(resid) else (0.0, 0.0)
    return np.stack([np.maximum(mu + lo_q, 0.0), mu, mu + hi_q], axis=-1)


def calendar_frame(
    series: pd.DataFrame, freq: str, horizon: int, season_length: int, event_windows=()
) -> pd.DataFrame:
    """Forecast every item of a long frame (`unique_id`, `ds`, `y`) `horizon` periods past its end, with
    statsforecast's column names: `calendar_level`, `calendar_level-lo-80`, `calendar_level-hi-80`."""
    wide = series.pivot(index="unique_id", columns="ds", values="y")
    periods = pd.date_range(wide.columns.min(), periods=wide.shape[1] + horizon, freq=freq)
    wide = wide.reindex(columns=periods[: wide.shape[1]])
    counts = bool(np.all(np.mod(series["y"].to_numpy(dtype=float), 1) == 0))
    pred = calendar_level_forecast(
        wide.to_numpy(), event_flags(periods, event_windows), horizon, season_length, counts
    )
    return pd.DataFrame(
        {
            "unique_id": np.repeat(wide.index.to_numpy(), horizon),
            "ds": np.tile(periods[wide.shape[1] :], wide.shape[0]),
            "calendar_level": pred[:, :, 1].ravel(),
            "calendar_level-lo-80": pred[:, :, 0].ravel(),
            "calendar_level-hi-80": pred[:, :, 2].ravel(),
        }
    )
