"""The closed loop's per-shopper wrapper: refitting its population model keeps each shopper's
multipliers and never serves the candidates cached from the previous fit."""

import numpy as np
import pandas as pd
import pytest

from marketing.closed_loop import _Personalised
from models.uplift.planner import score_options


class _Population:
    """A population model whose uplift is `level` for every shopper and coupon."""

    def __init__(self, level: float):
        self.level = level

    def fit(self, X, treatment, outcome, **fit_params):
        self.level = float(np.mean(outcome[treatment > 0]) - np.mean(outcome[treatment == 0]))
        return self

    def predict_candidates(self, X, shopper_ids, coupons=None):
        ids = np.asarray(shopper_ids)
        rows = [(c, s) for c in range(len(coupons)) for s in ids]
        return pd.DataFrame(
            {
                "coupon_id": [coupons["coupon_id"].iloc[c] for c, _ in rows],
                "shopper_id": [s for _, s in rows],
                "p_control": 0.1,
                "p_treated": 0.1 + self.level,
                "spend_control": 10.0,
                "spend_treated": 12.0,
                "cost": 1.0,
            }
        )


def test_refit_replaces_the_population_model_and_drops_its_cached_candidates():
    rng = np.random.default_rng(0)
    n = 50
    X = pd.DataFrame({"x": rng.random(n)})
    coupons = pd.DataFrame({"coupon_id": [1]})
    weeks = [(rng.integers(0, 2, n), rng.integers(0, 2, n), rng.uniform(50, 150, n)) for _ in range(3)]
    model = _Personalised(_Population(0.05), X, coupons, weeks)
    before = model.predict_uplift(X, coupons).mean()

    treatment = np.r_[np.zeros(n), np.ones(n)]
    outcome = np.r_[np.full(n, 0.1), np.full(n, 0.4)]  # a population uplift of 0.3
    assert model.fit(X, treatment, outcome) is model
    after = model.predict_uplift(X, coupons).mean()
    assert abs(model.model.level - 0.3) < 1e-12
    assert after > 2 * before  # the new population uplift, not the cached 0.05 candidates


class _Baskets(_Population):
    """The population model with the planner's basket columns: every buyer's order 100 CNY."""

    def predict_candidates(self, X, shopper_ids, coupons=None):
        cand = super().predict_candidates(X, shopper_ids, coupons)
        return cand.assign(
            spend_control=cand["p_control"] * 100.0,
            spend_treated=cand["p_treated"] * 100.0,
            basket_mean=100.0,
            basket_sigma=0.5,
            redeem_rate=1.0,
        ).drop(columns="cost")


def test_each_shoppers_own_orders_move_their_basket_and_so_the_coupons_cost():
    """Shoppers' own baskets spread (log sd 0.4) around the population model's 100 CNY; shopper 0
    always orders 400, shopper 1 always 30, shopper 2 never buys. A 20-off-199 coupon costs
    shopper 0 far more than the population model says, shopper 1 almost nothing; shopper 2 keeps
    the population's basket."""
    rng = np.random.default_rng(0)
    n, rounds = 400, 6
    X = pd.DataFrame({"x": np.zeros(n)})
    coupons = pd.DataFrame(
        {
            "coupon_id": ["A20"],
            "kind": "amount_off",
            "face_value": [20.0],
            "min_spend": [199.0],
            "cap": np.nan,
        }
    )
    own = 0.4 * rng.standard_normal(n) - 0.08
    weeks = []
    for _ in range(rounds):
        bought = np.ones(n, dtype=int)
        bought[2] = 0
        gross = 100.0 * np.exp(own + 0.5 * rng.standard_normal(n) - 0.125)
        gross[0], gross[1] = 400.0, 30.0
        weeks.append((np.zeros(n, dtype=int), bought, np.where(bought == 1, gross, 0.0)))
    model = _Personalised(_Baskets(0.05), X, coupons, weeks)
    cand = model.predict_candidates(X, np.arange(n), coupons)
    basket = cand["basket_mean"].to_numpy()
    assert basket[0] > 250 and basket[1] < 50
    assert basket[2] == pytest.approx(100.0, rel=0.08)  # the population model is right on average
    assert model.basket_.within_ == pytest.approx(0.5, abs=0.03)  # the week-to-week spread
    opts = score_options(cand, coupons, 0.3)
    cost = opts["cost"].to_numpy()
    assert cost[0] > 3 * cost[3:].mean() and cost[1] < 0.1 * cost[3:].mean()
