"""Peeking-safe inference against hand-computed cases, and the peeking simulation's key contrasts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from experiments.ab import sequential as seq
from experiments.ab.sequential_simulation import simulate_peeking
from experiments.ab.simulation import SCENARIOS


def test_msprt_matches_the_formula_by_hand():
    # d = 3, v = 1, tau^2 = 1: Lambda = sqrt(1/2) exp(9/4) = 6.70878; p = 1/Lambda.
    out = seq.msprt(np.array([3.0]), np.array([1.0]), 1.0, alpha=0.05)
    assert math.exp(out["log_lambda"][0]) == pytest.approx(math.sqrt(0.5) * math.exp(2.25))
    assert out["p_value"][0] == pytest.approx(0.149058, abs=1e-6)
    half = math.sqrt(2 * (math.log(2) - 2 * math.log(0.05)))  # 3.65639
    assert out["ci_low"][0] == pytest.approx(3 - half) and out["ci_high"][0] == pytest.approx(3 + half)


def test_msprt_p_value_never_increases_and_is_capped_at_one():
    d = np.array([[0.1, 3.0, 0.2, 4.0]])
    out = seq.msprt(d, np.ones_like(d), 1.0)
    p = out["p_value"][0]
    assert p[0] == 1.0  # Lambda < 1
    assert p[2] == p[1] == pytest.approx(0.149058, abs=1e-6)  # a weaker later look keeps the minimum
    assert p[3] < p[1]


def test_rho_tuning_by_hand():
    k = -2 * math.log(0.05)
    assert seq.msprt_rho2(1000, 0.05) == pytest.approx((k + math.log(1 + k)) / 1000)
    with pytest.raises(ValueError):
        seq.msprt_rho2(0)


def test_truncated_msprt_with_one_planned_look_is_the_z_test():
    # One look at t = 1: r = tau^2/v = c = k + log(1 + k), k = -2 log 0.05; Lambda >= 1/a' exactly
    # when |Z| >= 1.959964, so log(1/a') = 1.959964^2 c / (2 (1 + c)) - log(1 + c) / 2 (by hand: 0.61071).
    k = -2 * math.log(0.05)
    c = k + math.log(1 + k)
    by_hand = math.exp(-(1.959964**2 * c / (2 * (1 + c)) - 0.5 * math.log(1 + c)))
    assert by_hand == pytest.approx(0.54295, abs=1e-5)
    assert seq.msprt_planned_alpha([1.0]) == pytest.approx(by_hand, rel=1e-5)
    assert seq.msprt_z_bounds(np.array([1.0]), -math.log(by_hand))[0] == pytest.approx(1.959964, abs=1e-6)


def test_truncated_msprt_spends_exactly_alpha_over_14_looks_by_monte_carlo():
    t = np.arange(1, 15) / 14
    level = seq.msprt_planned_alpha(t)
    assert 0.05 < level < 0.5  # the 1/alpha threshold is conservative at a finite horizon
    rng = np.random.default_rng(5)
    z = np.cumsum(rng.normal(size=(200_000, 14)) * np.sqrt(1 / 14), axis=1) / np.sqrt(t)
    bounds = seq.msprt_z_bounds(t, -math.log(level))
    assert (np.abs(z) >= bounds).any(axis=1).mean() == pytest.approx(0.05, abs=0.003)
    # ...while the uncalibrated threshold spends about 1% (Ville's bound 5% is loose here).
    uncalibrated = seq.crossing_probability(t, seq.msprt_z_bounds(t, -math.log(0.05)))
    assert 0.005 < uncalibrated < 0.015
    # The same decision through `decisions` (d/sqrt(v) = z, units at the planned fractions).
    n = t * 1000
    v = 1.0 / n
    out = seq.decisions(
        "msprt", z[:2000] * np.sqrt(v), np.broadcast_to(v, (2000, 14)), n, planned_units=1000, planned_looks=t
    )
    assert out["threshold_alpha"] == pytest.approx(level)
    assert (out["reject"][:, -1] == (np.abs(z[:2000]) >= bounds).any(axis=1)).all()


def test_obf_spending_by_hand():
    assert seq.obf_spending(1.0, 0.05) == pytest.approx(0.05)
    # t = 1/4: 2 - 2 Phi(1.959964 * 2) = 2 - 2 Phi(3.919928)
    assert seq.obf_spending(0.25, 0.05) == pytest.approx(2 * stats.norm.sf(3.919928), rel=1e-5)
    with pytest.raises(ValueError):
        seq.obf_spending(0.0)


def test_group_sequential_bounds_spend_exactly_alpha():
    assert seq.group_sequential_bounds([1.0])[0] == pytest.approx(1.959964, abs=1e-6)
    c1, c2 = seq.group_sequential_bounds([0.5, 1.0])
    assert c1 == pytest.approx(1.959964 / math.sqrt(0.5), abs=1e-5)  # first look spends alpha(1/2)
    # P(|Z1| < c1, |Z2| < c2) with corr sqrt(1/2) must leave exactly 0.05 (bivariate normal by scipy).
    r = math.sqrt(0.5)
    mvn = stats.multivariate_normal([0, 0], [[1, r], [r, 1]])
    inside = mvn.cdf([c1, c2]) - mvn.cdf([-c1, c2]) - mvn.cdf([c1, -c2]) + mvn.cdf([-c1, -c2])
    assert 1 - inside == pytest.approx(0.05, abs=2e-5)
    assert c2 == pytest.approx(1.9793, abs=1e-3)


def test_group_sequential_type_one_error_over_14_looks_by_monte_carlo():
    t = np.arange(1, 15) / 14
    bounds = seq.group_sequential_bounds(t)
    assert (np.diff(bounds) < 0).all()
    rng = np.random.default_rng(3)
    z = np.cumsum(rng.normal(size=(200_000, 14)) * np.sqrt(1 / 14), axis=1) / np.sqrt(t)
    assert (np.abs(z) >= bounds).any(axis=1).mean() == pytest.approx(0.05, abs=0.003)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="increasing"):
        seq.group_sequential_bounds([0.5, 0.5])
    with pytest.raises(ValueError, match="method"):
        seq.decisions("bayes", [0.1], [1.0], [10], planned_units=10)
    with pytest.raises(ValueError, match="increasing information"):
        seq.decisions("group-sequential", [0.1, 0.2], [1.0, 1.0], [10, 10], planned_units=20)


def test_diff_of_means_from_sums_by_hand():
    # treatment 1,0,1,1 (mean .75, var .25); control 0,0,1,0 (mean .25, var .25)
    d, v = seq.diff_of_means(4, 3, 3, 4, 1, 1)
    assert d == pytest.approx(0.5) and v == pytest.approx(0.25 / 4 + 0.25 / 4)


def test_fixed_decision_rejects_at_any_look_below_alpha():
    out = seq.decisions("fixed", [0.0, 3.0, 0.0], [1.0, 1.0, 1.0], [10, 20, 30], planned_units=30)
    assert out["reject"].tolist() == [False, True, True]


def test_peeking_simulation_separates_the_methods():
    kw = dict(runs=300, looks=14, units=2800, seed=4)
    fixed = simulate_peeking(SCENARIOS["recommender"], method="fixed", **kw)
    gs = simulate_peeking(SCENARIOS["recommender"], method="group-sequential", **kw)
    ms = simulate_peeking(SCENARIOS["recommender"], method="msprt", **kw)
    assert fixed["false_positive_rate"] > 0.12  # peeking at fixed-horizon p-values inflates errors
    assert gs["false_positive_rate"] <= 0.08 and ms["false_positive_rate"] <= 0.08
    assert ms["anytime_threshold_rejection_rate"] <= ms["false_positive_rate"]
    assert fixed["fixed_final_look_rejection_rate"] <= 0.09  # one look at the end is fine
    power = simulate_peeking(SCENARIOS["recommender"], method="group-sequential", effect=0.5, **kw)
    assert "false_positive_rate" not in power and power["power"] > 0.5
    assert power["true_lift"] > 0
