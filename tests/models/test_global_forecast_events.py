"""The global forecaster with a known event calendar: an event it has seen part of lifts the forecast
for the rest of it by the market's uplift, and the baseline after an event is not inflated by it."""

from __future__ import annotations

import numpy as np

from models.forecast.global_model import GlobalLGBMForecaster

N_ITEMS, WEEKS, HORIZON = 80, 10, 7


def _market(event: np.ndarray, lift: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = rng.gamma(2.0, 2.0, N_ITEMS)[:, None]
    weekday = np.tile([1.0, 0.9, 0.9, 1.0, 1.1, 1.3, 1.2], WEEKS)[None, : len(event) - HORIZON]
    lam = level * weekday * np.where(event[: len(event) - HORIZON] > 0, lift, 1.0)[None, :]
    return rng.poisson(lam).astype(float)


def _fit(Y, event, **kw):
    return GlobalLGBMForecaster(HORIZON, season_length=7, n_estimators=60, **kw).fit(Y, event).predict()


def test_an_event_under_way_lifts_the_rest_of_it_by_the_markets_uplift():
    periods = WEEKS * 7 + HORIZON
    event = np.zeros(periods)
    event[WEEKS * 7 - 3 : WEEKS * 7 + 5] = 1  # 3 days of the event seen, 5 of it ahead
    Y = _market(event, lift=2.5)
    aware = _fit(Y, event)[:, :, 1].sum(axis=0)
    plain = _fit(Y, event, event_aware=False)[:, :, 1].sum(axis=0)
    regular = Y[:, -17:-3].sum(axis=0).mean()  # market per regular day, the 2 weeks before the event
    assert aware[:5].mean() > 1.8 * regular  # in the event: about 2.5 times
    assert aware[5:].mean() < 1.4 * regular  # after it: back to regular
    assert abs(aware[:5].mean() - 2.5 * regular) < abs(plain[:5].mean() - 2.5 * regular)


def test_after_an_event_the_baseline_comes_from_regular_periods():
    periods = WEEKS * 7 + HORIZON
    event = np.zeros(periods)
    event[WEEKS * 7 - 10 : WEEKS * 7 - 3] = 1  # a week-long event ended 3 days before the forecast
    Y = _market(event, lift=3.0, seed=1)
    aware = _fit(Y, event)[:, :, 1].sum(axis=0).mean()
    regular = Y[:, -24:-10].sum(axis=0).mean()
    assert abs(aware - regular) < 0.25 * regular


def test_unit_sales_get_whole_number_forecasts():
    import pandas as pd

    from models.forecast.global_model import forecast_frame

    periods = WEEKS * 7 + HORIZON
    Y = _market(np.zeros(periods), lift=1.0, seed=2)
    days = pd.date_range("2025-01-01", periods=Y.shape[1], freq="D")
    long = pd.DataFrame(
        {"unique_id": np.repeat(np.arange(N_ITEMS), Y.shape[1]), "ds": np.tile(days, N_ITEMS), "y": Y.ravel()}
    )
    out = forecast_frame(long, "D", HORIZON, 7)
    cols = ["lightgbm-lo-80", "lightgbm", "lightgbm-hi-80"]
    values = out[cols].to_numpy()
    assert np.all(values == np.round(values))
    assert np.all((values[:, 0] <= values[:, 1]) & (values[:, 1] <= values[:, 2]))
