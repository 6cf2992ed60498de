"""Off-policy estimators against hand-computed cases and an unbiasedness check."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.ab import offpolicy as ope


def test_explore_propensities_by_hand():
    top = np.array([[3, 4]])
    shown = np.array([[3, 7]])
    p = ope.explore_propensities(top, shown, epsilon=0.2, pool_size=10)
    # slot 0 shows the model's item: 0.8 + 0.2 / 10; slot 1 a random one: 0.2 / 10
    assert p[0].tolist() == pytest.approx([0.82, 0.02])
    with pytest.raises(ValueError):
        ope.explore_propensities(top, shown, epsilon=0.0, pool_size=10)
    with pytest.raises(ValueError):
        ope.explore_propensities(top, shown, epsilon=0.2, pool_size=1)


def test_ips_snips_dr_by_hand():
    # Two slots, three pages. Target shows items 1, 2 everywhere.
    shown = np.array([[1, 2], [1, 5], [4, 2]])
    prop = np.array([[0.5, 0.5], [0.5, 0.25], [0.25, 0.5]])
    reward = np.array([[1, 0], [0, 1], [1, 1]])
    target = np.array([[1, 2], [1, 2], [1, 2]])
    q_shown = np.full((3, 2), 0.1)
    q_target = np.full((3, 2), 0.2)
    out = ope.estimate(shown, prop, reward, target, q_shown=q_shown, q_target=q_target)
    # weights: [[2, 2], [2, 0], [0, 2]]; w*y: [[2, 0], [0, 0], [0, 2]] -> per page (2, 0, 2) / 2 slots
    assert out["ips"] == pytest.approx((1 + 0 + 1) / 3)
    # SNIPS per slot: slot 0 = 2 / 4, slot 1 = 2 / 4 -> 0.5
    assert out["snips"] == pytest.approx(0.5)
    # DR per page: sum_r (0.2 + w (y - 0.1)) / 2: page 1 (2.0 + 0.0) / 2 = 1.0; page 2 (0.0 + 0.2) / 2
    # = 0.1; page 3 (0.2 + 2.0) / 2 = 1.1 -> mean 2.2 / 3
    assert out["dr"] == pytest.approx(2.2 / 3)
    assert out["dm"] == pytest.approx(0.2)
    lo, hi = out["ips_ci"]
    assert lo < out["ips"] < hi
    assert out["ess_per_slot"] == [2.0, 2.0]  # (2 + 2)^2 / (4 + 4)
    assert out["match_rate"] == pytest.approx(4 / 6)


def test_bad_logs_are_refused():
    shown = np.array([[1], [2]])
    with pytest.raises(ValueError, match="propensities"):
        ope.estimate(shown, np.zeros((2, 1)), np.ones((2, 1)), shown)
    with pytest.raises(ValueError, match="one shape"):
        ope.estimate(shown, np.ones((2, 1)), np.ones((2, 2)), shown)


def test_candidate_rank_by_hand():
    shown = np.array([[5, 9, 7]])
    lists = np.array([[7, 5, 1, 2]])
    assert ope.candidate_rank(shown, lists).tolist() == [[1, 4, 0]]


def test_estimates_are_unbiased_on_a_known_click_model():
    n_items, k, pages = 20, 3, 40_000
    attraction = np.random.default_rng(0).uniform(0.05, 0.6, n_items)
    rng = np.random.default_rng(1)
    examine = np.array([1.0, 0.6, 0.4])
    logging_top = np.tile(np.arange(k), (pages, 1))  # logs items 0, 1, 2
    candidate = np.tile(np.array([10, 11, 12, 13, 14]), (pages, 1))  # would show 10, 11, 12
    truth = float((attraction[10:13] * examine).mean())
    shown, prop, explored = ope.sample_explore_pages(logging_top, n_items, 0.5, rng)
    clicks = (rng.random(shown.shape) < attraction[shown] * examine).astype(int)
    out = ope.evaluate(shown, prop, explored, {"ctr": clicks}, candidate)["ctr"]
    for name in ("ips", "snips", "dr"):
        lo, hi = out[f"{name}_ci"]
        assert lo <= truth <= hi, (name, out)
        assert out[name] == pytest.approx(truth, rel=0.15)
    # The logging model's own items are matched on exploitation pages: near-1 / 0.5 weights.
    own = ope.estimate(shown, prop, clicks, logging_top)
    assert own["ips"] == pytest.approx(float((attraction[:3] * examine).mean()), rel=0.05)
