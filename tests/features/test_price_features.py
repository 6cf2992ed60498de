"""Where shoppers shop on the price ladder (features.campaign_features.shopper_price_features)."""

import numpy as np
import pandas as pd
import pytest

from features.campaign_features import PRICE_FEATURES, shopper_price_features

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["cheap_lip", "mid_lip", "dear_lip", "cheap_tv", "dear_tv"],
        "category_id": ["lip", "lip", "lip", "tv", "tv"],
        "price": ["50.00", "100.00", "200.00", "2000.00", "8000.00"],
    }
)


def _event(shopper, product, etype, day, value=0.0):
    return {"ts": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=day), "shopper_id": shopper,
            "product_id": product, "event_type": etype, "value": value}  # fmt: skip


def test_category_level_price_position_and_order_value_before_as_of_only():
    events = pd.DataFrame(
        [
            _event("lips", "cheap_lip", "view", 1),
            _event("lips", "cheap_lip", "purchase", 1, 50.0),
            _event("lips", "mid_lip", "view", 2),
            _event("tvs", "dear_tv", "view", 1),
            _event("tvs", "dear_tv", "cart", 1),
            _event("tvs", "dear_tv", "purchase", 1, 8000.0),
            _event("lips", "dear_lip", "view", 20),  # after as_of: ignored
            _event("lips", "dear_lip", "purchase", 20, 200.0),
        ]
    )
    out = shopper_price_features(events, PRODUCTS, ["lips", "tvs", "new"], pd.Timestamp("2025-01-10"))
    assert list(out.columns) == list(PRICE_FEATURES)
    # lip median 100, tv median 5000: the tv shopper's baskets are fifty times dearer
    assert out.at["lips", "category_price_level"] == pytest.approx(np.log(100.0))
    assert out.at["tvs", "category_price_level"] == pytest.approx(np.log(5000.0))
    # the lip shopper viewed the cheap and the middle lipstick, bought the cheap one
    assert out.at["lips", "price_position_viewed"] == pytest.approx(np.log(0.5) / 2)
    assert out.at["lips", "price_position_bought"] == pytest.approx(np.log(0.5))
    assert out.at["tvs", "price_position_carted"] == pytest.approx(np.log(8000 / 5000))
    assert out.at["lips", "avg_order_value"] == pytest.approx(50.0)
    # a shopper without events gets the others' median: finite for every learner
    assert np.isfinite(out.to_numpy()).all()
    assert out.at["new", "avg_order_value"] == pytest.approx(np.median([50.0, 8000.0]))


def test_refuses_events_without_products():
    events = pd.DataFrame({"ts": [], "shopper_id": [], "event_type": [], "value": []})
    with pytest.raises(ValueError, match="product_id"):
        shopper_price_features(events, PRODUCTS, ["a"], pd.Timestamp("2025-01-10"))
