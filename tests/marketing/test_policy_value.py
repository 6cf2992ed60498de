import numpy as np
import pytest

from marketing.policy_value import policy_value, pooled_policy_value

THIRD = 1 / 3
ARMS = ["A", "control", "B", "A"]
REWARD = [6.0, 3.0, 9.0, 5.0]
TARGET = ["A", "A", "A", "control"]


def test_ips_by_hand():
    # terms: 6*3 (plan arm drawn), -3*3 (baseline drawn), 0 (other arm), 0 (plan gives baseline)
    v = policy_value(REWARD, ARMS, [THIRD] * 4, TARGET, scale=100)
    assert v.ips == pytest.approx(100 * (18 - 9) / 4)
    se = np.std([18, -9, 0, 0], ddof=1) / 2
    assert v.ips_low == pytest.approx(100 * (2.25 - 1.96 * se))
    assert v.ips_high == pytest.approx(100 * (2.25 + 1.96 * se))
    assert v.dr is None and v.n == 4


def test_dr_by_hand():
    # row 1: (5 - 2) + (6 - 5) * 3 = 6; row 2: (4 - 3) - (3 - 2) * 3 = -2; row 3: 4 - 2 = 2; row 4: 0
    v = policy_value(
        REWARD,
        ARMS,
        [THIRD] * 4,
        TARGET,
        q_target=[5, 4, 4, 99],
        q_baseline=[2, 3, 2, 99],
        q_logged=[5, 2, 8, 99],
        scale=100,
    )
    assert v.dr == pytest.approx(100 * 6 / 4)
    se = np.std([6, -2, 2, 0], ddof=1) / 2
    assert v.dr_low == pytest.approx(100 * (1.5 - 1.96 * se))
    assert v.dr_high == pytest.approx(100 * (1.5 + 1.96 * se))


def test_unbiased_and_dr_tighter_with_a_good_outcome_model():
    rng = np.random.default_rng(0)
    n, arms = 6000, np.array(["control", "A", "B"])
    x = rng.random(n)
    mean = {"control": 2 + x, "A": 2 + 3 * x, "B": 3 - x}
    target = np.where(x > 0.5, "A", "B")
    truth = np.mean(np.where(x > 0.5, mean["A"], mean["B"]) - mean["control"])
    covered_ips = covered_dr = 0
    for _ in range(40):
        a = rng.choice(arms, n)
        r = np.select([a == k for k in arms], [mean[k] for k in arms]) + rng.normal(0, 1, n)
        q = {k: mean[k] for k in arms}
        q_t = np.where(target == "A", q["A"], q["B"])
        q_l = np.select([a == k for k in arms], [q[k] for k in arms])
        v = policy_value(r, a, np.full(n, 1 / 3), target, q_target=q_t, q_baseline=q["control"], q_logged=q_l)
        covered_ips += v.ips_low <= truth <= v.ips_high
        covered_dr += v.dr_low <= truth <= v.dr_high
        assert v.dr_high - v.dr_low < 0.6 * (v.ips_high - v.ips_low)
    assert covered_ips >= 34 and covered_dr >= 34


def test_bad_input():
    with pytest.raises(ValueError, match="propensities"):
        policy_value([1.0], ["A"], [0.0], ["A"])
    with pytest.raises(ValueError, match="q_target, q_baseline and q_logged"):
        policy_value([1.0], ["A"], [0.5], ["A"], q_target=[1.0])
    with pytest.raises(ValueError, match="length"):
        policy_value([1.0, 2.0], ["A"], [0.5], ["A"])


def test_pooled_by_hand():
    # two rounds, two shoppers, arms 0 (none) and 1; the plan gives shopper 0 arm 1, shopper 1 none
    reward = [[4.0, 1.0], [2.0, 5.0]]
    logged = [[1, 0], [0, 0]]
    propensity = [[[0.5, 0.5], [1.0, 0.0]], [[0.9, 0.1], [1.0, 0.0]]]  # pbar(shopper 0) = (0.7, 0.3)
    v = pooled_policy_value(reward, logged, propensity, [1, 0])
    # shopper 0: round 1 hit 4 / 0.3, round 2 baseline -2 / 0.7; shopper 1 untreated: 0
    assert v.ips == pytest.approx((4 / 0.3 - 2 / 0.7) / 2)
    q = [[1.0, 3.0], [1.0, 9.0]]
    # direct part 3 - 1 = 2; corrections (4 - 3) / 0.3 and -(2 - 1) / 0.7
    v = pooled_policy_value(reward, logged, propensity, [1, 0], q=q)
    assert v.dr == pytest.approx(2 + (1 / 0.3 - 1 / 0.7) / 2)
    with pytest.raises(ValueError, match="support"):
        pooled_policy_value(reward, logged, propensity, [1, 1])  # shopper 1 never could get arm 1


def test_pooled_is_unbiased_across_changing_loggers_and_covers():
    rng = np.random.default_rng(1)
    n, rounds = 3000, 4
    x = rng.random(n)
    mean = np.column_stack([1 + x, 1 + 2 * x, 2 - x])  # arms 0 (none), 1, 2
    target = np.where(x > 0.5, 1, 2)
    truth = float((mean[np.arange(n), target] - mean[:, 0]).sum())
    hits = 0
    for _ in range(30):
        logged, reward, props = [], [], []
        for s in range(rounds):
            # a planned audience (changing by round) with a 10% holdout, a 5% uniform probe
            plan = np.zeros((n, 3))
            plan[:, 0] = 1
            chosen = x > 0.3 + 0.1 * s
            plan[chosen] = [0.1, 0.9, 0.0]
            p = 0.05 / 3 + 0.95 * plan
            a = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
            logged.append(a)
            reward.append(mean[np.arange(n), a] + rng.normal(0, 1, n))
            props.append(p)
        v = pooled_policy_value(reward, logged, props, target, q=mean + 0.3)
        hits += v.dr_low <= truth <= v.dr_high
    assert hits >= 26  # ~95% nominal


def test_realized_interval_adds_the_runs_own_noise_and_covers_realised_draws():
    from marketing.policy_value import realized_interval

    low, high = realized_interval(10.0, 6.08, 13.92, 0.0)  # se 2: no outcome noise, the same interval
    assert (low, high) == pytest.approx((6.08, 13.92))
    low, high = realized_interval(10.0, 6.08, 13.92, 5.0)  # se 2, outcome variance 5: sd 3
    assert (low, high) == pytest.approx((10 - 1.96 * 3, 10 + 1.96 * 3))
    # a plan of 400 shoppers with known mean reward: the expectation's interval alone misses most
    # realised totals when the estimate is precise, the realised interval covers ~95% of them
    rng = np.random.default_rng(3)
    mean, var = 400 * 0.3 * 5.0, 400 * (0.3 * 25.0 - (0.3 * 5.0) ** 2)
    realised = (rng.random((2000, 400)) < 0.3).sum(axis=1) * 5.0
    narrow = (mean - 1.96 * 1.0, mean + 1.96 * 1.0)
    wide = realized_interval(mean, *narrow, var)
    assert np.mean((narrow[0] <= realised) & (realised <= narrow[1])) < 0.2
    assert np.mean((wide[0] <= realised) & (realised <= wide[1])) == pytest.approx(0.95, abs=0.02)
    with pytest.raises(ValueError):
        realized_interval(1.0, 0.0, 2.0, -1.0)


def test_pooled_dr_interval_keeps_its_coverage_when_few_rare_rows_carry_the_estimate():
    """A plan giving everyone an arm that only a 0.4% probe ever drew: the handful of large terms
    that carry the estimate are mostly absent, so the sample's spread understates the real one
    (measured 77% coverage); the variance the known propensities imply keeps the interval honest."""
    rng = np.random.default_rng(5)
    n, rounds, reps = 2000, 2, 200
    p_buy = np.column_stack([np.full(n, 0.05), np.full(n, 0.08)])
    mean, var = 50 * p_buy, 2500 * p_buy * (1 - p_buy)
    target = np.ones(n, dtype=int)
    truth = float((mean[:, 1] - mean[:, 0]).sum())
    sample_only = with_floor = 0
    for _ in range(reps):
        logged, reward, props = [], [], []
        for _ in range(rounds):
            p = np.column_stack([np.full(n, 0.996), np.full(n, 0.004)])
            a = (rng.random(n) < p[:, 1]).astype(int)
            logged.append(a)
            props.append(p)
            reward.append(50.0 * (rng.random(n) < p_buy[np.arange(n), a]))
        v = pooled_policy_value(reward, logged, props, target, q=mean)
        w = pooled_policy_value(reward, logged, props, target, q=mean, q_var=var)
        assert w.dr == v.dr and w.dr_high - w.dr_low >= v.dr_high - v.dr_low
        sample_only += v.dr_low <= truth <= v.dr_high
        with_floor += w.dr_low <= truth <= w.dr_high
    assert sample_only / reps < 0.85
    assert with_floor / reps >= 0.93
    with pytest.raises(ValueError, match="q_var"):
        pooled_policy_value(reward, logged, props, target, q=mean, q_var=var[:, :1])
