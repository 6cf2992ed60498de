"""Uplift learners: recover known effects, several arms, continuous outcomes, conventions, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from experiments.uplift_metrics import qini_auc_score
from models.uplift import (
    AutoUplift,
    ClassTransformation,
    DRLearner,
    FunnelLearner,
    SLearner,
    TLearner,
    UpliftEnsemble,
    XLearner,
    make_model,
)

LEARNERS = [SLearner, TLearner, XLearner, DRLearner, ClassTransformation]


def two_arm_data(n=6000, seed=0):
    """Arm "a" lifts conversion by 0.25 where x0 > 0 only; arm "b" by 0.1 everywhere; control "ctl"."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    arm = rng.choice(np.array(["ctl", "a", "b"], dtype=object), n)
    p = 0.2 + 0.05 * X[:, 1].clip(-1, 1)
    p = p + np.where(arm == "a", 0.25 * (X[:, 0] > 0), 0.0) + np.where(arm == "b", 0.1, 0.0)
    y = (rng.random(n) < p).astype(int)
    return X, arm, y


@pytest.mark.parametrize("cls", LEARNERS)
def test_learners_find_who_responds_to_each_arm(cls):
    X, arm, y = two_arm_data()
    model = cls(control="ctl").fit(X, arm, y)
    assert list(model.arms_) == ["a", "b"]
    effects = model.predict_uplift(X)
    assert effects.shape == (len(X), 2)
    responsive = X[:, 0] > 0
    a = effects[:, 0]
    # arm a: about +0.25 where x0 > 0, about 0 elsewhere
    assert a[responsive].mean() - a[~responsive].mean() > 0.12
    assert abs(a[~responsive].mean()) < 0.07
    # arm b: a flat +0.1
    assert effects[:, 1].mean() == pytest.approx(0.1, abs=0.05)


@pytest.mark.parametrize("key", ["s", "t", "x", "dr", "ct", "si-lr", "t-lr", "x-lr", "ct-lr", "ens"])
def test_named_models_rank_responders_first(key):
    X, arm, y = two_arm_data(seed=1)
    rows = arm != "b"
    t = (arm[rows] == "a").astype(int)
    model = make_model(key).fit(X[rows], t, y[rows])
    u = model.predict_uplift(X[rows])
    assert u.shape == (rows.sum(),)
    assert qini_auc_score(y[rows], u, t) > 0.15


def test_linear_s_learner_without_interactions_follows_the_base_rate():
    """`s-lr` has no feature x arm terms: its uplift can only grow with the base rate's curvature."""
    rng = np.random.default_rng(5)
    n = 4000
    X = rng.normal(size=(n, 2))
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 0.8 * X[:, 0] + 0.8 * t)))).astype(int)
    u = make_model("s-lr").fit(X, t, y).predict_uplift(X)
    base = 1 / (1 + np.exp(-(-1.5 + 0.8 * X[:, 0])))
    assert np.corrcoef(u, base * (1 - base))[0, 1] > 0.9


@pytest.mark.parametrize("cls", [SLearner, TLearner, XLearner, DRLearner, ClassTransformation])
def test_continuous_outcome(cls):
    rng = np.random.default_rng(2)
    n = 6000
    X = rng.normal(size=(n, 2))
    t = rng.integers(0, 2, n)
    spend = np.maximum(0, 50 + 10 * X[:, 1] + t * 30 * (X[:, 0] > 0) + rng.normal(0, 20, n))
    u = cls().fit(X, t, spend).predict_uplift(X)
    assert u[X[:, 0] > 0].mean() - u[X[:, 0] <= 0].mean() == pytest.approx(30, abs=10)


def test_deterministic_and_clonable():
    X, arm, y = two_arm_data(n=2000)
    a = XLearner(control="ctl", random_state=3).fit(X, arm, y).predict_uplift(X)
    b = clone(XLearner(control="ctl", random_state=3)).fit(X, arm, y).predict_uplift(X)
    np.testing.assert_array_equal(a, b)
    assert XLearner(control="ctl").get_params()["control"] == "ctl"
    assert not hasattr(XLearner(), "arms_")  # __init__ stores parameters only


def test_auto_picks_by_the_one_se_rule_and_ensemble_averages():
    X, arm, y = two_arm_data(n=3000, seed=4)
    rows = arm != "b"
    t = (arm[rows] == "a").astype(int)
    auto = AutoUplift(candidates=("s", "t-lr"), cv=2, combine=False).fit(X[rows], t, y[rows])
    assert set(auto.cv_scores_) == {"s", "t-lr"}
    level = [k for k in ("s", "t-lr") if auto.cv_scores_[k]["level_with_best"]]
    assert auto.best_key_ == level[0]  # the first level candidate in the given order
    np.testing.assert_allclose(auto.predict_uplift(X[:5]), auto.model_.predict_uplift(X[:5]))
    ens = UpliftEnsemble(members=("s", "t-lr")).fit(X[rows], t, y[rows])
    parts = [m.predict_uplift(X[:5]) for m in ens.models_]
    np.testing.assert_allclose(ens.predict_uplift(X[:5]), np.mean(parts, axis=0))


def test_clear_errors():
    X, arm, y = two_arm_data(n=500)
    with pytest.raises(ValueError, match="no control rows"):
        TLearner(control="none").fit(X, arm, y)
    with pytest.raises(ValueError, match="differ in length"):
        TLearner(control="ctl").fit(X[:10], arm, y)
    with pytest.raises(ValueError, match="missing or infinite"):
        TLearner(control="ctl").fit(X, arm, np.where(np.arange(500) == 3, np.nan, y))
    with pytest.raises(ValueError, match="is a classifier"):
        XLearner(LogisticRegression(), control="ctl").fit(X, arm, y)
    with pytest.raises(ValueError, match="is a classifier"):
        TLearner(LogisticRegression()).fit(X, (arm == "a").astype(int), np.linspace(0, 5, 500))
    with pytest.raises(RuntimeError, match="not fitted"):
        SLearner().predict_uplift(X)
    fitted = SLearner(control="ctl").fit(X, arm, y)
    with pytest.raises(ValueError, match="features"):
        fitted.predict_uplift(X[:, :2])
    with pytest.raises(ValueError, match="unknown uplift model"):
        make_model("nope")


def funnel_data(n=20_000, seed=0):
    """The mail lifts visits from 20% to 30% everywhere; a visit converts with 50% where x0 > 0, 10%
    elsewhere, mail or not: the true conversion uplift is 0.1 x 0.5 = 0.05 where x0 > 0, 0.01 elsewhere."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    t = rng.integers(0, 2, n)
    visit = (rng.random(n) < 0.2 + 0.1 * t).astype(int)
    conversion = visit * (rng.random(n) < np.where(X[:, 0] > 0, 0.5, 0.1))
    return X, t, conversion, visit


def test_funnel_multiplies_the_gate_by_the_outcome_given_the_gate():
    X, t, y, visit = funnel_data()
    model = FunnelLearner().fit(X, t, y, gate=visit)
    u = model.predict_uplift(X)
    high = X[:, 0] > 0
    # P(visit) x P(conversion | visit): 0.05 and 0.01; a second stage fitted on every row instead of
    # the visits (P(conversion) = P(visit) x P(conversion | visit)) would give 0.1 x 0.5 x 0.5 = 0.025
    assert u[high].mean() == pytest.approx(0.05, abs=0.01)
    assert u[~high].mean() == pytest.approx(0.01, abs=0.01)
    level = model.gate_.predict_level(X, 1) * model.given_gate_.predict_level(X, 1)
    np.testing.assert_allclose(u, level - model.gate_.predict_level(X) * model.given_gate_.predict_level(X))
    assert make_model("funnel").fit(X, t, y, gate=visit).predict_uplift(X[:3]) == pytest.approx(u[:3])
    # the blend averaged with the funnel: each on its training predictions' scale, the funnel with its gate
    both = make_model("funnel-blend").fit(X, t, y, gate=visit)
    assert both.members == ("blend", "funnel") and both.standardise
    np.testing.assert_allclose(both.models_[1].predict_uplift(X[:50]), u[:50])


def test_funnel_two_part_learns_spend_through_the_visit():
    """`funnel-2p`: spend = the funnel's purchase uplift through the visit x the order value."""
    X, t, conversion, visit = funnel_data()
    value = np.where(X[:, 1] > 0, 100.0, 50.0)
    model = make_model("funnel-2p", binary=False).fit(X, t, conversion * value, gate=visit)
    assert isinstance(model.purchase_, FunnelLearner)
    u = model.predict_uplift(X)
    high, big = X[:, 0] > 0, X[:, 1] > 0
    # true uplift: 0.05 or 0.01 (the funnel's, see funnel_data) x an order value of 100 or 50
    for rows, truth in ((high & big, 5.0), (high & ~big, 2.5), (~high & big, 1.0), (~high & ~big, 0.5)):
        assert u[rows].mean() == pytest.approx(truth, abs=0.25 * truth + 0.3)
    with pytest.raises(ValueError, match="needs gate"):
        make_model("funnel-2p", binary=False).fit(X, t, conversion * value)


def test_funnel_refuses_a_missing_or_wrong_gate():
    X, t, y, visit = funnel_data(n=2000)
    with pytest.raises(ValueError, match="needs gate"):
        FunnelLearner().fit(X, t, y)
    with pytest.raises(ValueError, match="no funnel step"):
        FunnelLearner().fit(X, t, y, gate=1 - visit)
    with pytest.raises(ValueError, match="one value per row"):
        FunnelLearner().fit(X, t, y, gate=visit[:10])
    with pytest.raises(ValueError, match="the gate is the outcome"):
        FunnelLearner().fit(X, t, y, gate=y)
    with pytest.raises(TypeError):
        SLearner().fit(X, t, y, gate=visit)  # learners without a gate refuse one
