"""The closed loop's per-shopper wrapper: refitting its population model keeps each shopper's
multipliers and never serves the candidates cached from the previous fit."""

import numpy as np
import pandas as pd

from marketing.closed_loop import _Personalised


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
    weeks = [(rng.integers(0, 2, n), rng.integers(0, 2, n)) for _ in range(3)]
    model = _Personalised(_Population(0.05), X, coupons, weeks)
    before = model.predict_uplift(X, coupons).mean()

    treatment = np.r_[np.zeros(n), np.ones(n)]
    outcome = np.r_[np.full(n, 0.1), np.full(n, 0.4)]  # a population uplift of 0.3
    assert model.fit(X, treatment, outcome) is model
    after = model.predict_uplift(X, coupons).mean()
    assert abs(model.model.level - 0.3) < 1e-12
    assert after > 2 * before  # the new population uplift, not the cached 0.05 candidates
