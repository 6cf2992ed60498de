"""Uplift metrics against values computed by hand (worked in the comments) on a six-row example.

Rows in predicted order r1..r6: (y, t) = (1,1) (0,1) (1,0) (0,0) (1,1) (0,0).
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments.uplift_metrics import (
    perfect_qini_curve,
    perfect_uplift_curve,
    plot_uplift_report,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
    uplift_auc_score,
    uplift_by_percentile,
    uplift_calibration,
    uplift_curve,
)

Y = np.array([1, 0, 1, 0, 1, 0])
T = np.array([1, 1, 0, 0, 1, 0])
U = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def test_qini_curve_by_hand():
    # k=3: 1 treated responder of 2 treated, 1 control responder of 1 control: 1 - 1*2/1 = -1
    # k=5: 2 - 1*3/2 = 0.5; k=6: 2 - 1*3/3 = 1
    x, q = qini_curve(Y, U, T)
    assert x.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert q == pytest.approx([0, 1, 1, -1, 0, 0.5, 1])


def test_perfect_qini_groups_ties():
    # ideal scores 1,0,-1,0,1,0 -> order r5 r1 | r6 r4 r2 | r3, one point per distinct score
    x, q = perfect_qini_curve(Y, T)
    assert x.tolist() == [0, 2, 5, 6]
    assert q == pytest.approx([0, 2, 2, 1])


def test_qini_auc_by_hand():
    # model area 2.0, perfect 9.5, random line to (6, 1) 3.0 -> (2 - 3) / (9.5 - 3)
    assert qini_auc_score(Y, U, T) == pytest.approx(-1 / 6.5)


def test_qini_auc_of_perfect_scores_is_one_and_reversal_flips_sign():
    ideal = Y * T - Y * (1 - T)
    assert qini_auc_score(Y, ideal, T) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    y, t = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    u = rng.normal(size=500)
    assert qini_auc_score(y, -u, t) != pytest.approx(qini_auc_score(y, u, t))


def test_uplift_curve_and_auuc_by_hand():
    # k=5: (2/3 - 1/2) * 5; k=6: (2/3 - 1/3) * 6 = 2
    x, v = uplift_curve(Y, U, T)
    assert v == pytest.approx([0, 1, 1, -1.5, 0, 5 / 6, 2])
    # perfect ordering (2*(y==t) + t): points (2, 2), (4, 4), (5, 10/3), (6, 2); area 43/3
    xp, vp = perfect_uplift_curve(Y, T)
    assert xp.tolist() == [0, 2, 4, 5, 6]
    assert vp == pytest.approx([0, 2, 4, 10 / 3, 2])
    # model area 7/3, random line to (6, 2) area 6
    assert uplift_auc_score(Y, U, T) == pytest.approx((7 / 3 - 6) / (43 / 3 - 6))


def test_uplift_at_k_overall_and_by_group_by_hand():
    # overall top 3 = r1 r2 r3: treated 1/2, control 1/1
    assert uplift_at_k(Y, U, T, 0.5, "overall") == pytest.approx(-0.5)
    # by_group: top int(1.5)=1 of treated (r1: 1) and of control (r3: 1)
    assert uplift_at_k(Y, U, T, 0.5, "by_group") == pytest.approx(0.0)
    # top 5 overall: treated r1 r2 r5 -> 2/3, control r3 r4 -> 1/2
    assert uplift_at_k(Y, U, T, 5 / 6 + 1e-9, "overall") == pytest.approx(2 / 3 - 1 / 2)


def test_uplift_at_k_rejects_a_top_without_both_groups():
    with pytest.raises(ValueError, match="no treated or no control"):
        uplift_at_k(Y, U, T, 1 / 3, "overall")  # top 2 are both treated


def test_uplift_by_percentile_and_calibration_by_hand():
    table = uplift_by_percentile(Y, U, T, bins=2)
    assert table["n_treatment"].tolist() == [2, 1]
    assert table["n_control"].tolist() == [1, 2]
    assert table["uplift"].tolist() == pytest.approx([0.5 - 1.0, 1.0 - 0.0])
    by_group = uplift_by_percentile(Y, U, T, bins=2, strategy="by_group")
    # treated in order r1 r2 r5 -> [1, 0] [1]; control r3 r4 r6 -> [1, 0] [0]
    assert by_group["uplift"].tolist() == pytest.approx([0.0, 1.0])
    cal = uplift_calibration(Y, U, T, bins=2)
    assert cal["predicted_uplift"].tolist() == pytest.approx([0.8, 0.5])
    assert cal["observed_uplift"].tolist() == pytest.approx([-0.5, 1.0])


def test_ties_follow_scikit_uplift_order():
    # all scores equal: a single point at the end, whatever the row order
    x, q = qini_curve(Y, np.zeros(6), T)
    assert x.tolist() == [0, 6] and q == pytest.approx([0, 1])


@pytest.mark.parametrize(
    "args, message",
    [
        ((Y, U[:5], T), "differ in length"),
        ((Y, U, np.array([0, 1, 2, 0, 1, 0])), "binary"),
        ((Y, U, np.ones(6, dtype=int)), "both treated and control"),
        ((np.array([1, 0, np.nan, 0, 1, 0]), U, T), "finite"),
    ],
)
def test_bad_input_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        qini_auc_score(*args)


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(1)
    y, t, u = rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.normal(size=200)
    paths = plot_uplift_report(y, u, t, tmp_path, prefix="m")
    assert [p.name for p in paths] == ["m_qini.png", "m_uplift_curve.png", "m_calibration.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
