"""The closed loop's contact rules: fatigue in the simulated truth, the frequency cap, and the
logging propensity that the pooled policy value relies on."""

import numpy as np
import pandas as pd
import pytest

from marketing.closed_loop import LoopMarket, LoopSettings, _Contacts, _fatigued, _logging_propensity


def _market(n=4):
    p0 = np.full(n, 0.1)
    p_buy = np.column_stack([p0, p0 + 0.2, p0 + 0.4])
    basket = np.full(n, 200.0)
    cost = np.column_stack([0.3 * 10, 0.5 * 20]) * np.ones((n, 1))
    profit = 0.3 * basket[:, None] * (1.08 * p_buy[:, 1:] - p0[:, None]) - cost
    return LoopMarket(np.arange(n), pd.DataFrame(index=range(n)), p_buy, basket, cost, profit,
                      None, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())  # fmt: skip


def test_fatigue_shrinks_the_effect_per_recent_coupon_and_none_keeps_the_truth():
    m = _market()
    p, cost, profit = _fatigued(m, np.zeros(4), 0.5, 0.3)
    assert np.allclose(p, m.p_buy) and np.allclose(cost, m.true_cost) and np.allclose(profit, m.true_profit)
    p, cost, _ = _fatigued(m, np.array([0, 1, 2, 0]), 0.5, 0.3)
    assert np.allclose(p[:, 1] - p[:, 0], [0.2, 0.1, 0.05, 0.2])  # uplift x 0.5 per recent coupon
    assert np.allclose(p[:, 0], 0.1)  # the no-coupon purchase is untouched
    assert cost[1, 0] < m.true_cost[1, 0]  # fewer purchases, fewer redemptions


def test_frequency_cap_and_fatigue_window_count_recent_rounds_only():
    s = LoopSettings(fatigue=0.5, fatigue_window=2, frequency_cap=2, cap_window=3)
    c = _Contacts(4, s)
    assert c.eligible().all()
    c.add([0, 1])
    c.add([0])
    assert c.eligible().tolist() == [False, True, True, True]  # shopper 0: two in the last three
    assert c.recent(2).tolist() == [2, 1, 0, 0]
    c.add([2])
    c.add([])
    assert c.eligible().tolist() == [True, True, True, True]  # shopper 0's coupons left the window
    assert np.allclose(c.truth(_market())[0][:, 1] - 0.1, [0.2, 0.2, 0.1, 0.2])


def test_logging_propensity_capped_shoppers_get_nothing_and_rows_sum_to_one():
    eligible = np.array([True, True, True, False])
    rows, arms, planned = np.array([0, 1]), np.array([1, 0]), np.array([1, 1])  # shopper 1: holdout
    p = _logging_propensity(eligible, 2, rows, arms, planned, inclusion=np.full(4, 1 / 3))
    assert np.allclose(p.sum(axis=1), 1)
    assert p[3].tolist() == [1.0, 0.0, 0.0]
    share = 1 / 3  # each eligible shopper probed with chance 1/3, arms uniform over none and two coupons
    assert np.isclose(p[0, 1], share / 3 + (1 - share) * 0.5)  # half of coupon 1's audience held out
    assert np.isclose(p[2, 2], share / 3)  # unplanned: only the probe could give it coupon 2


def test_hard_budget_cap_refuses_redemptions_once_spent_and_never_exceeds_it():
    from marketing.closed_loop import MENU, _admitted, _draws

    rng = np.random.default_rng(0)
    n = 300
    p0 = np.full(n, 0.2)
    p_buy = np.column_stack([p0, np.full((n, 4), 0.9)])
    m = LoopMarket(np.arange(n), pd.DataFrame(index=range(n)), p_buy, np.full(n, 400.0), None, None,
                   None, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())  # fmt: skip
    rows, arms = np.arange(n), np.full(n, 4)  # 50 off 299 for everyone: ~0.9 x 0.9 x 300 x 50 wanted
    free = _draws(m, MENU, rows, arms, p_buy, np.inf, rng, 50)
    assert not free["refused"].any()
    capped = _draws(m, MENU, rows, arms, p_buy, 2000.0, rng, 50)
    assert (capped["cost"].sum(axis=1) <= 2000.0).all() and (capped["cost"].sum(axis=1) > 1900).all()
    assert capped["refused"].any(axis=1).all()
    # a shopper turned away pays full price only if they would have bought without the coupon
    refused = capped["refused"]
    assert capped["converted"][refused].mean() == pytest.approx(0.2 / 0.9, abs=0.05)
    assert (capped["cost"][refused] == 0).all()
    # in any arrival order: within budget, and every refused discount is larger than what is left
    # (a later, smaller one still fits what a larger one could not)
    wanted = np.tile([8.0, 5.0, 2.0, 0.0], (200, 1))
    ok = _admitted(wanted, 10.0, np.random.default_rng(1))
    spent = np.where(ok, wanted, 0).sum(axis=1)
    assert (spent <= 10).all() and ok[:, 3].all()
    assert all((wanted[i][~ok[i]] > 10 - spent[i]).all() for i in range(200))
    assert {tuple(r) for r in ok[:, :3]} == {(True, False, True), (False, True, True)}
