"""Per-shopper response multipliers by empirical Bayes (models.uplift.shopper_response)."""

import numpy as np
import pytest

from models.uplift.shopper_response import ShopperBasket, ShopperResponse


def _weeks(rng, n=4000, weeks=6, coupon_share=0.5):
    """Half the shoppers answer coupons three times as strongly as the population model says, half
    not at all; the model's baseline is right. Every week each shopper gets a coupon or not."""
    p0 = rng.uniform(0.05, 0.2, n)
    tau = rng.uniform(0.05, 0.15, n)
    r_true = np.where(rng.random(n) < 0.5, 3.0, 0.0)
    shopper = np.tile(np.arange(n), weeks)
    coupon = rng.random(len(shopper)) < coupon_share
    p = p0[shopper] + coupon * r_true[shopper] * tau[shopper]
    bought = (rng.random(len(shopper)) < p).astype(int)
    return n, p0, tau, r_true, shopper, np.where(coupon, tau[shopper], 0.0), bought


def test_own_weeks_separate_responders_the_population_model_cannot_tell_apart():
    rng = np.random.default_rng(0)
    n, p0, tau, r_true, shopper, week_tau, bought = _weeks(rng)
    model = ShopperResponse().fit(shopper, p0[shopper], week_tau, bought, n)
    # the prior learned from everyone: mass at both ends, a mean uplift multiplier near the truth's 1.5
    assert model.prior_ @ model.grid_[:, 1] == pytest.approx(1.5, abs=0.3)
    responders = r_true > 0
    assert model.r_[responders].mean() > 1.4 * model.r_[~responders].mean()  # ~3 coupon weeks each
    # ranking shoppers by their posterior uplift beats the population model's ranking by far
    q0, q1 = model.predict(p0, tau)
    true_uplift = r_true * tau
    assert np.corrcoef(q1 - q0, true_uplift)[0, 1] > 0.5  # measured 0.59
    assert np.corrcoef(tau, true_uplift)[0, 1] < 0.3  # 0.25
    # the baseline multipliers stay near 1: the population model's baseline is right
    assert np.median(model.a_) == pytest.approx(1.0, abs=0.25)


def test_a_shopper_without_weeks_keeps_the_prior_and_draws_come_from_the_grid():
    rng = np.random.default_rng(1)
    n, p0, _, _, shopper, week_tau, bought = _weeks(rng, n=2000)
    keep = shopper != 0  # shopper 0 has no logged week
    model = ShopperResponse().fit(shopper[keep], p0[shopper[keep]], week_tau[keep], bought[keep], n)
    assert model.r_[0] == pytest.approx(model.prior_ @ model.grid_[:, 1])
    a, r = model.sample(rng)
    assert np.isin(r, model.uplift_grid).all() and np.isin(a, model.baseline_grid).all()


def test_refuses_inconsistent_weeks():
    with pytest.raises(ValueError, match="length"):
        ShopperResponse().fit([0, 1], [0.1], [0.0, 0.0], [0, 1], 2)
    with pytest.raises(ValueError, match="n_shoppers"):
        ShopperResponse().fit([0, 2], [0.1, 0.1], [0.0, 0.0], [0, 1], 2)
    with pytest.raises(ValueError, match="0 or 1"):
        ShopperResponse().fit([0, 1], [0.1, 0.1], [0.0, 0.0], [0, 2], 2)


def test_order_values_shrink_toward_the_population_by_the_number_of_purchases():
    """Shoppers' own log offsets sd 0.4 around the population model, orders spread 0.5 around them:
    the posterior offset tracks the truth better the more a shopper bought, and a shopper who never
    bought keeps the population's mean with the full prior spread."""
    rng = np.random.default_rng(2)
    n = 3000
    offset = rng.normal(0.0, 0.4, n)
    buys = rng.integers(0, 6, n)
    buys[0] = 0
    shopper = np.repeat(np.arange(n), buys)
    z = offset[shopper] + rng.normal(0.0, 0.5, len(shopper))
    model = ShopperBasket().fit(shopper, z, n)
    assert model.within_ == pytest.approx(0.5, abs=0.03)
    assert model.tau2_ == pytest.approx(0.16, abs=0.03)
    assert model.u_[0] == pytest.approx(model.mean_) and model.u_sd_[0] == pytest.approx(0.4, abs=0.04)
    err = (model.u_ - offset) ** 2
    assert err[buys == 5].mean() < 0.5 * err[buys == 1].mean() < 0.5 * err[buys == 0].mean() * 1.6
    # shrinkage beats each shopper's raw mean where they bought once
    raw = np.bincount(shopper, z, n) / np.maximum(buys, 1)
    assert err[buys == 1].mean() < ((raw - offset) ** 2)[buys == 1].mean()
    with pytest.raises(ValueError, match="length"):
        ShopperBasket().fit([0, 1], [0.1], 2)
