"""Delivery-time simulation (the generator's truth), features, the calibrated quantile model, the rule."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from features.logistics import delivery_features
from features.synth.logistics import PARTNER_INDEX, PARTNERS, simulate_delivery_days
from models.logistics import DeliveryTimeModel, ShippingOption, cheapest_within, fastest

US = 1_000_000
# 2025-06-02 is a Monday; 02:00 UTC is 10:00 in China, before the 16:00 cut-off
MONDAY_US = int(datetime(2025, 6, 2, 2, tzinfo=UTC).timestamp()) * US
DAY = 86_400 * US


def _simulate(partner_id, n, at_us=MONDAY_US, zone="east", peaks=(), seed=0):
    rng = np.random.default_rng(seed)
    return simulate_delivery_days(
        rng, np.full(n, PARTNER_INDEX[partner_id]), np.full(n, zone), np.full(n, at_us), list(peaks)
    )


def test_partners_differ_in_speed_and_direct_mail_is_slower():
    medians = {p.partner_id: np.median(_simulate(p.partner_id, 4000)) for p in PARTNERS}
    assert medians["sf-bonded"] < medians["cainiao-bonded"] < medians["yto-bonded"]
    assert medians["dhl-express"] < medians["cainiao-global"] < medians["ems-intl"]
    assert max(medians[p] for p in ("sf-bonded", "cainiao-bonded")) < medians["dhl-express"]


def test_distance_peak_season_and_weekends_slow_parcels_down():
    near = np.median(_simulate("cainiao-bonded", 4000, zone="east"))
    far = np.median(_simulate("cainiao-bonded", 4000, zone="west"))
    assert far > near + 0.8
    peak = np.median(_simulate("cainiao-bonded", 4000, peaks=[(MONDAY_US - DAY, MONDAY_US + DAY)]))
    assert peak > near * 1.3
    # YTO neither picks up nor delivers on Sundays: a Saturday-evening order waits until Monday
    saturday_evening = MONDAY_US - 2 * DAY + 10 * 3600 * US  # 20:00 China time on Saturday
    days = _simulate("yto-bonded", 2000, at_us=saturday_evening)
    local_arrival = (saturday_evening / DAY + 8 / 24) + days
    assert ((np.floor(local_arrival).astype(int) + 3) % 7 != 6).all()  # never delivered on a Sunday
    assert days.min() > 1.9  # nothing leaves before Monday 18:00


def test_features_read_china_time_and_peak_windows():
    parcels = pd.DataFrame(
        {
            "partner_id": ["sf-bonded", "ems-intl"],
            "zone": ["east", "west"],
            "weight_g": [500, 2500],
            "ordered_at": pd.to_datetime(["2025-11-01T17:00:00Z", "2025-11-20T01:00:00Z"]),
        }
    )
    peak = [(pd.Timestamp("2025-10-31", tz="UTC"), pd.Timestamp("2025-11-12", tz="UTC"))]
    X = delivery_features(parcels, peak)
    assert X["weekday"].tolist() == [6, 3]  # Saturday 17:00 UTC is Sunday 01:00 in China
    assert X["hour"].tolist() == [1.0, 9.0]
    assert X["in_peak"].tolist() == [1, 0]  # 2025-11-20 is past the season and its 5-day tail
    assert X["peak_day"].iloc[0] == pytest.approx(1 + 17 / 24)
    assert X["weight_kg"].tolist() == [0.5, 2.5]
    with pytest.raises(ValueError, match="zone"):
        delivery_features(parcels.drop(columns="zone"))


def _history(n, seed):
    rng = np.random.default_rng(seed)
    partner = rng.integers(0, len(PARTNERS), n)
    zones = np.array(["east", "north", "south", "central", "west"])[rng.integers(0, 5, n)]
    start = MONDAY_US
    ordered = start + rng.integers(0, 120 * DAY, n)
    peaks = [(start + 60 * DAY, start + 72 * DAY)]
    days = simulate_delivery_days(rng, partner, zones, ordered, peaks)
    parcels = pd.DataFrame(
        {
            "partner_id": [PARTNERS[i].partner_id for i in partner],
            "zone": zones,
            "weight_g": rng.integers(100, 5000, n),
            "ordered_at": pd.to_datetime(ordered, unit="us", utc=True),
        }
    )
    windows = [(pd.Timestamp(a, unit="us", tz="UTC"), pd.Timestamp(b, unit="us", tz="UTC")) for a, b in peaks]
    return delivery_features(parcels, windows), days


def test_calibrated_intervals_cover_about_80_percent_for_every_partner():
    X, y = _history(24_000, seed=1)
    model = DeliveryTimeModel(n_estimators=80, random_state=0).fit(X[:18_000], y[:18_000])
    q = model.predict_quantiles(X[18_000:])
    assert list(q.columns) == ["q10", "q50", "q80", "q90"]
    assert (np.diff(q.to_numpy(), axis=1) >= 0).all() and (q.to_numpy() >= 0).all()
    held = y[18_000:]
    inside = (held >= q["q10"].to_numpy()) & (held <= q["q90"].to_numpy())
    partner = X["partner_id"].to_numpy()[18_000:]
    for pid in np.unique(partner):
        assert 0.74 <= inside[partner == pid].mean() <= 0.86, pid
    assert 0.76 <= (held <= q["q80"].to_numpy()).mean() <= 0.84
    # the model knows the partners apart: SF's median is well below EMS's
    med = pd.Series(q["q50"].to_numpy()).groupby(partner).median()
    assert med["sf-bonded"] < med["ems-intl"] / 2


def test_model_refuses_bad_input():
    X, y = _history(100, seed=2)
    with pytest.raises(ValueError, match="at least"):
        DeliveryTimeModel().fit(X[:10], y[:10])
    with pytest.raises(RuntimeError, match="fit"):
        DeliveryTimeModel().predict_quantiles(X)
    model = DeliveryTimeModel(n_estimators=5).fit(X, y)
    with pytest.raises(ValueError, match="missing"):
        model.predict_quantiles(X.drop(columns="hour"))


def test_rule_picks_the_cheapest_partner_that_can_promise_else_the_fastest():
    options = [
        ShippingOption("sf", Decimal("20"), 1.8),
        ShippingOption("cn", Decimal("12"), 2.9),
        ShippingOption("yto", Decimal("7"), 4.5),
    ]
    assert cheapest_within(options, 3).key == "cn"
    assert cheapest_within(options, 5).key == "yto"
    assert cheapest_within(options, 1).key == "sf"  # nobody can promise a day: the fastest
    assert fastest(options).key == "sf"
    with pytest.raises(ValueError):
        fastest([])
