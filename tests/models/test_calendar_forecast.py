"""`calendar_level`: the known event calendar lifts the forecast in an event by the lift the market showed
in the events the history holds; without the calendar it does not; after an event the level is regular."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecast.calendar_model import calendar_frame, calendar_level_forecast, event_flags

N_ITEMS, DAYS, HORIZON = 60, 84, 7
WEEKDAY = np.array([1.0, 0.9, 0.9, 1.0, 1.1, 1.3, 1.2])


def _market(event: np.ndarray, lift: float, seed: int = 0) -> np.ndarray:
    """items x DAYS Poisson counts: item level x weekday x `lift` in event days."""
    rng = np.random.default_rng(seed)
    level = rng.gamma(2.0, 1.5, N_ITEMS)[:, None]
    days = np.arange(DAYS)
    lam = level * WEEKDAY[days % 7][None, :] * np.where(event[:DAYS] > 0, lift, 1.0)[None, :]
    return rng.poisson(lam).astype(float)


def test_with_the_calendar_the_forecast_catches_a_known_lift_and_without_it_does_not():
    event = np.zeros(DAYS + HORIZON)
    event[40:47] = 1  # a past promotion week: the market sold 3 times as much
    event[DAYS + 2 : DAYS + 5] = 1  # a planned one inside the horizon
    Y = _market(event, lift=3.0)
    regular_day = Y[:, 56:DAYS].sum(axis=0).mean()  # the market's regular day lately
    aware = calendar_level_forecast(Y, event, HORIZON, season_length=7)[:, :, 1].sum(axis=0)
    blind = calendar_level_forecast(Y, None, HORIZON, season_length=7)[:, :, 1].sum(axis=0)
    inside = slice(2, 5)
    assert aware[inside].mean() > 2.4 * regular_day  # the lift of 3 (medians of counts sit a bit lower)
    assert blind[inside].mean() < 1.3 * regular_day  # no calendar: a regular forecast
    outside = [0, 1, 5, 6]
    assert abs(aware[outside].mean() - regular_day) < 0.2 * regular_day


def test_a_past_event_does_not_inflate_the_level_after_it():
    event = np.zeros(DAYS + HORIZON)
    event[DAYS - 10 : DAYS - 3] = 1  # ended 3 days before the forecast
    Y = _market(event, lift=4.0, seed=1)
    regular_day = Y[:, DAYS - 38 : DAYS - 10].sum(axis=0).mean()
    aware = calendar_level_forecast(Y, event, HORIZON, season_length=7).sum(axis=0).mean(axis=0)
    blind = calendar_level_forecast(Y, None, HORIZON, season_length=7).sum(axis=0).mean(axis=0)
    assert abs(aware[1] - regular_day) < 0.15 * regular_day
    # without the calendar the event week counts as regular demand: a higher level and a wider spread
    assert blind[2] > 1.3 * aware[2]


def test_counts_get_whole_numbers_and_other_quantities_a_band_around_the_mean():
    Y = _market(np.zeros(DAYS + HORIZON), lift=1.0, seed=2)
    days = pd.date_range("2025-01-01", periods=DAYS, freq="D")
    long = pd.DataFrame(
        {"unique_id": np.repeat(np.arange(N_ITEMS), DAYS), "ds": np.tile(days, N_ITEMS), "y": Y.ravel()}
    )
    cols = ["calendar_level-lo-80", "calendar_level", "calendar_level-hi-80"]
    counts = calendar_frame(long, "D", HORIZON, 7)[cols].to_numpy()
    assert np.all(counts == np.round(counts))
    assert np.all((counts[:, 0] <= counts[:, 1]) & (counts[:, 1] <= counts[:, 2]))
    kilos = calendar_frame(long.assign(y=long["y"] * 0.37), "D", HORIZON, 7)[cols].to_numpy()
    assert not np.all(kilos == np.round(kilos))
    assert np.all((kilos[:, 0] <= kilos[:, 1]) & (kilos[:, 1] <= kilos[:, 2]))


def test_event_flags_mark_the_windows_end_exclusive_in_any_time_zone():
    periods = pd.date_range("2025-11-09", periods=5, freq="D")
    flags = event_flags(periods, [(pd.Timestamp("2025-11-10", tz="UTC"), "2025-11-12")])
    assert flags.tolist() == [0, 1, 1, 0, 0]


def test_the_calendar_must_cover_the_horizon():
    with pytest.raises(ValueError, match="cover"):
        calendar_level_forecast(np.ones((2, 20)), np.zeros(21), HORIZON)
