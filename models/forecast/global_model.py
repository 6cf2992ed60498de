"""A global LightGBM forecaster: one model for every item, direct multi-step, median and interval quantiles.

Why: item-level retail demand is mostly small counts with many zeros, where a per-series mean forecast
(ETS, Croston) pays a large absolute error; one model learned across thousands of items (as in the M5
competition) shares the patterns (weekday, the level of recent sales, time since the last sale, a known
promotion calendar) and predicts the median, which is what minimises absolute error (MASE).

For an origin t (the last observed period) and a step s = 1..h, the features are the item's recent values
scaled by its recent level, that level, the target period's phase in the season, the step, and whether
the target and the origin fall in a known event window (a discount season). Targets are scaled the same
way; three quantile models (10%, 50%, 90%) give the point forecast and an 80% interval, widened by a
conformal margin measured on the latest origins (held out from a first fit).

Events are planned calendar dates a merchant knows in advance (exogenous regressors). With
`event_aware` (the default) the regular level, lags and same-phase mean leave event periods out, so an
event neither inflates the baseline after it nor hides in it; an event target is scaled by the regular
level times the market's uplift in the events the history holds (all items' event demand over their
regular demand), so it looks like a regular target to the model; and the calendar features say how far
into an event the target is, how long since the last one ended, and each item's own uplift so far.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from models.forecast.calendar_model import event_flags

N_LAGS = 14
LEVEL_WINDOW = 28
MAX_ORIGINS = 35
QUANTILES = (0.1, 0.5, 0.9)


class GlobalLGBMForecaster:
    """Fit on a wide history (items x periods); predict `horizon` periods after its last period."""

    def __init__(
        self,
        horizon: int,
        season_length: int = 1,
        n_estimators: int = 150,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        max_origins: int = MAX_ORIGINS,
        random_state: int = 0,
        event_aware: bool = True,
    ):
        self.horizon = horizon
        self.season_length = season_length
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_origins = max_origins
        self.random_state = random_state
        self.event_aware = event_aware

    def _features(
        self, Y: np.ndarray, origin: int, step: int, event: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feature block for every item at one origin and step, and each item's scale.

        With `event_aware`, the level, short-term mean and lags come from regular periods only (event
        periods masked), so a promotion neither inflates the baseline after it nor hides it; the event
        side is the calendar at the target (in an event, periods into it, periods since the last one
        ended) and each item's uplift in the events its history holds (event mean / regular level)."""
        lo = max(0, origin - LEVEL_WINDOW + 1)
        regular = Y
        if self.event_aware:
            regular = np.where(event[None, : Y.shape[1]] > 0, np.nan, Y)
        recent = regular[:, lo : origin + 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: items not yet on sale
            level = np.nanmean(recent, axis=1)
            short = np.nanmean(regular[:, max(0, origin - 6) : origin + 1], axis=1)
            zero_share = np.nanmean(recent == 0, axis=1)
            if self.event_aware:  # too few regular periods lately: fall back to every period
                fallback = np.nanmean(Y[:, lo : origin + 1], axis=1)
                level = np.where(np.isnan(level), fallback, level)
                short = np.where(np.isnan(short), level, short)
        scale = np.nan_to_num(level, nan=0.0) + 0.1
        lags = np.full((Y.shape[0], N_LAGS), np.nan)
        take = min(N_LAGS, origin + 1)
        lags[:, :take] = regular[:, origin - take + 1 : origin + 1][:, ::-1]
        observed = ~np.isnan(Y[:, : origin + 1])
        sold = np.where(observed & (np.nan_to_num(Y[:, : origin + 1]) > 0))
        last_sale = np.full(Y.shape[0], -1)
        np.maximum.at(last_sale, sold[0], sold[1])
        since_sale = np.where(last_sale >= 0, origin - last_sale, origin + 1)
        history = observed.sum(axis=1)
        target = origin + step
        m = self.season_length
        same_phase = np.full(Y.shape[0], np.nan)
        if m > 1:
            phases = [target - k * m for k in range(1, 5) if 0 <= target - k * m <= origin]
            if phases:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    same_phase = np.nanmean(regular[:, phases], axis=1)
        n = Y.shape[0]
        calendar = []
        lift = 1.0
        if self.event_aware:
            in_event = np.asarray(event[: origin + 1]) > 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                event_mean = np.nanmean(np.where(in_event[None, :], Y[:, : origin + 1], np.nan), axis=1)
                base = np.nanmean(np.where(in_event[None, :], np.nan, Y[:, : origin + 1]), axis=1)
            uplift = (event_mean + 0.1) / (base + 0.1) if in_event.any() else np.full(n, np.nan)
            into, since = self._event_position(event, target)
            lift = self._market_uplift(Y, event, origin) if target < len(event) and event[target] else 1.0
            calendar = [np.log(uplift), np.full(n, into), np.full(n, since), np.full(n, np.log(lift))]
        # the inputs are relative to the regular level; an event target to the level the market shows
        # in events, so that it looks like a regular target to the model
        target_scale = scale * lift
        block = np.column_stack(
            [
                lags / scale[:, None],
                short / scale,
                same_phase / scale,
                zero_share,
                np.log(target_scale),  # the target's expected level
                np.minimum(since_sale, 60),
                np.minimum(history, 400),
                np.full(n, step),
                np.full(n, target % m if m > 1 else 0),
                np.full(n, float(event[target]) if target < len(event) else 0.0),
                np.full(n, float(event[origin])),
                *calendar,
            ]
        )
        return block, target_scale

    @staticmethod
    def _market_uplift(Y: np.ndarray, event: np.ndarray, origin: int) -> float:
        """How many times regular demand the whole market sold per period in the events the history
        holds (all items together: robust where one item's few event periods are not); 1 when none."""
        on = np.asarray(event[: origin + 1]) > 0
        if not on.any() or on.all():
            return 1.0
        totals = np.nansum(Y[:, : origin + 1], axis=0)
        regular = np.where(~on)[0][-LEVEL_WINDOW:]
        base = totals[regular].mean()
        return float(totals[on].mean() / base) if base > 0 else 1.0

    @staticmethod
    def _event_position(event: np.ndarray, t: int) -> tuple[float, float]:
        """Periods since the event around `t` began (NaN outside one), and since the last one before `t`
        ended (NaN when none has; capped at 60)."""
        on = np.asarray(event[: t + 1]) > 0
        into = np.nan
        if on[t]:
            off = np.where(~on)[0]
            into = float(t - (off[-1] + 1 if len(off) else 0))
        ended = np.where(on[:-1] & ~on[1:])[0]  # last event period before a regular one
        since = float(min(60, t - ended[-1])) if len(ended) else np.nan
        return into, since

    def fit(self, Y: np.ndarray, event: np.ndarray | None = None) -> GlobalLGBMForecaster:
        """`Y`: items x periods demand, NaN before an item's first period; `event`: per period (history and
        the `horizon` periods after it) 1 inside a known event window, else 0."""
        Y = np.asarray(Y, dtype=float)
        n_periods = Y.shape[1]
        event = np.zeros(n_periods + self.horizon) if event is None else np.asarray(event, dtype=float)
        if len(event) < n_periods + self.horizon:
            raise ValueError("the event calendar must cover the history and the forecast horizon")
        first = max(1, n_periods - 1 - self.max_origins - self.horizon)
        X, y, origin = self._examples(Y, event, first, n_periods)
        if len(y) == 0:
            raise ValueError("history too short to train the global model")
        # Conformal width: fit without the latest `horizon` origins, measure how far their targets fall
        # outside the 10-90% band (in scaled units), widen the band by that much, then refit on everything.
        recent = origin >= n_periods - 1 - self.horizon
        self.widen_ = 0.0
        if recent.any() and (~recent).sum() >= recent.sum():
            lo, _, hi = (m.predict(X[recent]) for m in self._fit_models(X[~recent], y[~recent]))
            outside = np.maximum(lo - y[recent], y[recent] - hi)
            n = len(outside)
            self.widen_ = float(np.quantile(outside, min(1.0, np.ceil((n + 1) * 0.8) / n)))
        self.models_ = self._fit_models(X, y)
        self.Y_, self.event_ = Y, event
        return self

    def _examples(self, Y, event, first, n_periods):
        X_parts, y_parts, origins = [], [], []
        for origin in range(first, n_periods - 1):
            for step in range(1, self.horizon + 1):
                if origin + step >= n_periods:
                    break
                block, scale = self._features(Y, origin, step, event)
                target = Y[:, origin + step]
                keep = ~np.isnan(target) & ~np.isnan(Y[:, origin])
                X_parts.append(block[keep])
                y_parts.append(target[keep] / scale[keep])
                origins.append(np.full(int(keep.sum()), origin))
        if not X_parts:
            return np.empty((0, 0)), np.empty(0), np.empty(0)
        return np.vstack(X_parts), np.concatenate(y_parts), np.concatenate(origins)

    def _fit_models(self, X: np.ndarray, y: np.ndarray) -> list:
        import lightgbm as lgb

        return [
            lgb.LGBMRegressor(
                objective="quantile", alpha=q, n_estimators=self.n_estimators,
                learning_rate=self.learning_rate, num_leaves=self.num_leaves, min_child_samples=50,
                subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=self.random_state,
                n_jobs=1, verbose=-1,
            ).fit(X, y)
            for q in QUANTILES
        ]  # fmt: skip

    def predict(self) -> np.ndarray:
        """items x horizon x 3 array: the 10%, 50% and 90% quantiles for each of the next periods."""
        origin = self.Y_.shape[1] - 1
        out = np.empty((self.Y_.shape[0], self.horizon, len(QUANTILES)))
        for step in range(1, self.horizon + 1):
            block, scale = self._features(self.Y_, origin, step, self.event_)
            lo, mid, hi = (m.predict(block) for m in self.models_)
            preds = np.column_stack([lo - self.widen_, mid, hi + self.widen_]) * scale[:, None]
            out[:, step - 1, :] = np.clip(np.sort(preds, axis=1), 0.0, None)
        return out


def forecast_frame(
    series: pd.DataFrame, freq: str, horizon: int, season_length: int, event_windows=(), random_state: int = 0
) -> pd.DataFrame:
    """Forecast every item of a long frame (`unique_id`, `ds`, `y`) `horizon` periods past its end, as
    statsforecast names columns: `lightgbm`, `lightgbm-lo-80`, `lightgbm-hi-80`. Whole-number histories
    (unit sales) get whole-number forecasts."""
    wide = series.pivot(index="unique_id", columns="ds", values="y")
    periods = pd.date_range(wide.columns.min(), periods=wide.shape[1] + horizon, freq=freq)
    wide = wide.reindex(columns=periods[: wide.shape[1]])
    model = GlobalLGBMForecaster(horizon, season_length, random_state=random_state)
    pred = model.fit(wide.to_numpy(), event_flags(periods, event_windows)).predict()
    if np.all(np.mod(series["y"].to_numpy(dtype=float), 1) == 0):
        # counts: the median of a count is a whole number (the absolute error is linear between two);
        # the interval holds the same whole numbers as before (and at least the median)
        mid = np.round(pred[..., 1])
        lo, hi = np.minimum(np.ceil(pred[..., 0]), mid), np.maximum(np.floor(pred[..., 2]), mid)
        pred = np.stack([lo, mid, hi], axis=-1)
    future = periods[wide.shape[1] :]
    ids = np.repeat(wide.index.to_numpy(), horizon)
    return pd.DataFrame(
        {
            "unique_id": ids,
            "ds": np.tile(future, wide.shape[0]),
            "lightgbm": pred[:, :, 1].ravel(),
            "lightgbm-lo-80": pred[:, :, 0].ravel(),
            "lightgbm-hi-80": pred[:, :, 2].ravel(),
        }
    )
