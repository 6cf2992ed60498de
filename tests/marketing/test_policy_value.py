import numpy as np
import pytest

from marketing.policy_value import policy_value

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
