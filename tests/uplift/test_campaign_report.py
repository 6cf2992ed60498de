"""Campaign measurement: point estimates by hand, intervals against scipy/statsmodels, and coverage."""

from __future__ import annotations

from decimal import Decimal

import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from marketing.measurement import coverage_study, measure_campaign

TREATED = dict(converted=[1, 0, 0, 1], revenue=[100, 0, 0, 50], cost=[Decimal("10"), 0, 0, Decimal("10")])
HOLDOUT = dict(converted=[0, 0, 1, 0], revenue=[0, 0, 80, 0])


def measure(**overrides):
    args = dict(
        treated_converted=TREATED["converted"],
        treated_revenue=TREATED["revenue"],
        treated_cost=TREATED["cost"],
        holdout_converted=HOLDOUT["converted"],
        holdout_revenue=HOLDOUT["revenue"],
        margin_rate=Decimal("0.3"),
    )
    return measure_campaign(**{**args, **overrides})


def test_point_estimates_by_hand():
    m = measure()
    assert m.incremental_conversion_rate == pytest.approx(0.5 - 0.25)
    assert m.incremental_conversions == pytest.approx(0.25 * 4)
    assert m.incremental_revenue_per_shopper == pytest.approx(37.5 - 20.0)
    assert m.incremental_revenue == pytest.approx(17.5 * 4)
    assert m.cost == pytest.approx(20.0)
    # ROI = 0.3 x 17.5 / (20 / 4) - 1
    assert m.roi == pytest.approx(0.05)


def test_intervals_match_reference_implementations():
    m = measure()
    welch = stats.ttest_ind(TREATED["revenue"], HOLDOUT["revenue"], equal_var=False).confidence_interval(0.95)
    assert m.incremental_revenue_per_shopper_ci == pytest.approx((welch.low, welch.high))
    assert m.incremental_revenue_ci == pytest.approx((4 * welch.low, 4 * welch.high))
    newcombe = confint_proportions_2indep(2, 4, 1, 4, method="newcomb", compare="diff")
    assert m.incremental_conversion_rate_ci == pytest.approx(newcombe)
    lo, hi = m.roi_ci
    assert lo < m.roi < hi


def test_bad_input():
    with pytest.raises(ValueError, match="one value per shopper"):
        measure(treated_revenue=[1, 2])
    with pytest.raises(ValueError, match="0/1"):
        measure(holdout_converted=[0, 2, 0, 0])
    with pytest.raises(ValueError, match="at least 2"):
        measure(holdout_converted=[1], holdout_revenue=[3])
    with pytest.raises(ValueError, match="margin_rate"):
        measure(margin_rate=0)


def test_no_redemptions_gives_undefined_roi_not_a_crash():
    m = measure(treated_cost=[0, 0, 0, 0])
    assert m.roi != m.roi  # NaN: no cost, no return on it


def test_intervals_cover_the_true_effect():
    """40 simulated campaigns: a 95% interval covering in under 34 (85%) would be a broken interval
    (the chance of that with true 95% coverage is below 1%)."""
    study = coverage_study(n_campaigns=40, audience=3000, control_share=0.2, seed=3)
    for metric, share in study["coverage"].items():
        assert share >= 34 / 40, (metric, share)
