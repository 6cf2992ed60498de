"""`bench.closed_loop_signal`: the deal-proneness features read only the event log before the as-of
time, and the two patched worlds change what they say and leave the generator as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features.synth.campaigns as synth_campaigns
import features.synth.generator as synth_generator
from bench.closed_loop_signal import MEAN_SENSITIVITY, deal_features, more_campaigns, season_by_sensitivity
from features.synth.model import CatalogModel, ModelParams, sigmoid
from features.synth.timeline import Timeline

SEASON = (pd.Timestamp("2025-11-01", tz="UTC"), pd.Timestamp("2025-11-10", tz="UTC"))


def _events(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [(pd.Timestamp(ts, tz="UTC"), who, etype) for who, etype, ts in rows],
        columns=["ts", "shopper_id", "event_type"],
    )


def test_deal_features_compare_a_shopper_with_their_own_rate_off_season():
    out_, in_ = "2025-10-01", "2025-11-05"
    events = _events(
        [("A", "view", out_)] * 4
        + [("A", "view", in_)] * 2
        + [("A", "cart", in_)] * 2
        + [("A", "purchase", in_), ("A", "coupon_grant", out_), ("A", "coupon_redeem", in_)]
        + [("B", "view", out_)] * 4
        + [("B", "cart", out_), ("B", "purchase", out_), ("B", "coupon_grant", out_)]
        + [("B", "coupon_redeem", "2025-12-05"), ("B", "cart", "2025-12-05")]  # after the as-of time
    )
    f = deal_features(events, ["A", "B", "C"], pd.Timestamp("2025-12-01"), SEASON)
    # A carts 2 of 2 season views; at A's own shrunk rate off season (0 + 2 x 1/8) / (4 + 2) and the
    # population's season lift (1 / (1/8)) 2 views give 2/3 carts: log((2 + 2) / (2/3 + 2))
    assert f.loc["A", "season_cart_lift"] == pytest.approx(np.log(1.5))
    assert f.loc["A", "season_buy_lift"] == pytest.approx(np.log(9 / 7))
    # no season views: nothing observed, nothing expected
    assert (f.loc[["B", "C"], ["season_cart_lift", "season_buy_lift"]] == 0).all().all()
    # redemptions over grants (the population's 1 / 2 as the prior), B's later redemption unseen
    assert f["coupon_redeem_rate"].tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    # A's purchase is in the season, B's is not
    assert f["discount_purchase_share"].tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 2])


def test_season_world_scales_the_season_boosts_by_sensitivity_and_restores_the_model():
    params, catalog = (
        ModelParams(),
        CatalogModel.build(
            n_leaves=1,
            n_origins=1,
            brand_latent=np.zeros((1, 8)),
            brand_origin=[0],
            brand_price_level=[0.0],
            brand_live_from=[0],
            brand_live_until=[np.iinfo(np.int64).max],
            product_brand=[0],
            product_leaf=[0],
            product_popularity=[1.0],
            product_rel_price=[0.2],
        ),
    )
    ps = np.array([0.1, MEAN_SENSITIVITY, 0.9, 0.9])
    season = np.array([True, True, True, False])
    before_cart = catalog.cart_probability(np.ones(4), ps, np.zeros(4, int), season, params)
    before_buy = CatalogModel.buy_probability(season, params)
    with season_by_sensitivity():
        cart = catalog.cart_probability(np.ones(4), ps, np.zeros(4, int), season, params)
        buy = CatalogModel.buy_probability(season, params)
        with pytest.raises(RuntimeError):  # a buy chance without the views' sensitivities
            CatalogModel.buy_probability(season, params)
    # at the mean sensitivity and off season: today's chances; above the mean in season: higher
    assert cart[[1, 3]] == pytest.approx(before_cart[[1, 3]])
    assert buy[[1, 3]] == pytest.approx(before_buy[[1, 3]])
    assert cart[0] < before_cart[0] and cart[2] > before_cart[2]
    assert buy[2] == pytest.approx(
        sigmoid(params.buy_intercept + params.season_buy_boost * 0.9 / MEAN_SENSITIVITY)
    )
    assert catalog.cart_probability(np.ones(4), ps, np.zeros(4, int), season, params) == pytest.approx(
        before_cart
    )
    assert CatalogModel.buy_probability(season, params) == pytest.approx(before_buy)


def test_more_campaigns_adds_eight_weeks_outside_the_season_and_restores_the_four():
    four = synth_campaigns.CAMPAIGNS
    timeline = Timeline()
    season_days = [
        (pd.Timestamp(d) - pd.Timestamp(timeline.start)).days
        for d in (timeline.season_start, timeline.season_end)
    ]
    with more_campaigns():
        camps = synth_campaigns.CAMPAIGNS
        assert synth_generator.CAMPAIGNS is camps and len(camps) == 12 and set(four) <= set(camps)
        assert synth_campaigns.ALL_COUPONS == tuple(c for camp in camps for c in camp.coupons)
        days = [(c.start_day, c.end_day) for c in camps]
        assert days == sorted(days) and all(
            e <= s for (_, e), (s, _) in zip(days[:-1], days[1:], strict=True)
        )
        assert all(e <= season_days[0] or s >= season_days[1] for s, e in days)
    assert synth_campaigns.CAMPAIGNS is four and synth_generator.CAMPAIGNS is four
