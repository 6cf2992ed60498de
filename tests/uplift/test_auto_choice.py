"""`auto` model choice: the one-standard-error rule by hand, and `auto` against scikit-uplift's own
models when the signal is strong and when there is none."""

from __future__ import annotations

import numpy as np
import pytest

from models.uplift.selection import (
    NESTED_RULES,
    AutoUplift,
    UpliftEnsemble,
    applicable,
    decide,
    make_model,
    one_se_choice,
    rule_choice,
    takes_gate,
)
from training.evaluate_uplift import CampaignData, evaluate_models


def test_one_se_rule_prefers_the_simpler_candidate_when_the_folds_cannot_tell_them_apart():
    # two candidates, two metrics, four folds: with two candidates every standardised score is +-1
    simple = np.array([[0.10, 0.20], [0.10, 0.20], [0.10, 0.20], [0.30, 0.40]])
    complex_ = np.array([[0.20, 0.30], [0.20, 0.30], [0.20, 0.30], [0.00, 0.10]])
    # complex wins folds 1-3, simple fold 4: per-fold gap 2, 2, 2, -2 -> mean 1, sd 2, se 1: level
    chosen, summary = one_se_choice({"complex": complex_, "simple": simple}, order=("simple", "complex"))
    assert chosen == "simple"
    assert summary["complex"]["combined"] == pytest.approx(0.5)
    assert summary["simple"]["gap_to_best"] == pytest.approx(1.0)
    assert summary["simple"]["gap_se"] == pytest.approx(1.0)
    assert summary["simple"]["qini_auc"] == pytest.approx(0.15)
    # complex wins every fold: gap 2 each time, se 0: simple is not level, complex is chosen
    complex_all = np.array([[0.20, 0.30]] * 4)
    simple_all = np.array([[0.10, 0.20]] * 4)
    chosen, summary = one_se_choice({"simple": simple_all, "complex": complex_all}, ("simple", "complex"))
    assert chosen == "complex"
    assert not summary["simple"]["level_with_best"]
    # the order, not the dict order, decides among level candidates
    chosen, _ = one_se_choice({"simple": simple, "complex": complex_}, order=("complex", "simple"))
    assert chosen == "complex"


def test_one_se_rule_weighs_both_metrics_whatever_their_units():
    # uplift@30 in dollars (large numbers) must not drown Qini: a wins Qini, b wins uplift@30 by a
    # hair in dollar terms, c loses both; a and b tie on the standardised scale, c is never chosen
    a = np.array([[0.10, 100.0], [0.10, 100.0], [0.10, 100.0]])
    b = np.array([[0.05, 101.0], [0.05, 101.0], [0.05, 101.0]])
    c = np.array([[0.00, 99.0], [0.00, 99.0], [0.00, 99.0]])
    chosen, summary = one_se_choice({"a": a, "b": b, "c": c}, order=("c", "b", "a"))
    assert chosen == "b"
    assert summary["a"]["combined"] == pytest.approx(summary["b"]["combined"])
    assert not summary["c"]["level_with_best"]


def test_applicable_candidates():
    assert applicable("s-lr", binary=True) and not applicable("s-lr", binary=False)
    assert applicable("s-2p", binary=False) and not applicable("s-2p", binary=True)
    assert applicable("t", binary=True) and applicable("t", binary=False)


def _campaign(n: int, effect: float, seed: int) -> CampaignData:
    """Uplift rising smoothly from 0 to `effect` with x0 (half of it at x0 = 0); base rate 10%."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    t = rng.integers(0, 2, n)
    p = 0.1 + 0.03 * X["x1"].clip(-1, 1) + effect * t / (1 + np.exp(-2 * X["x0"]))
    y = (rng.random(n) < p).astype(float)
    return CampaignData(X=X, treatment=t, outcome=y)


@pytest.mark.parametrize("effect", [0.3, 0.0])
def test_auto_matches_the_best_scikit_uplift_model(effect):
    """Against six baselines (S, T, class transformation on LightGBM defaults and on our regularised
    LightGBM, the latter the very learners `auto` chooses among) the test set's own noise decides
    the last digits, so `auto` must be level with the best within one bootstrap standard error of
    the gap; with a strong signal it must also beat scikit-uplift on LightGBM defaults outright.
    Without a signal every score is noise and the best of six baselines is the luckiest draw (on
    average 1.3 standard deviations above the rest), so there the tolerance is two standard errors."""
    train, test = _campaign(6000, effect, seed=1), _campaign(6000, effect, seed=2)
    rows = {r["model"]: r for r in evaluate_models(train, test, ["auto"], baselines=True)}
    auto = rows["auto"]
    assert {k for k in rows if k.startswith("sklift-")} == {
        f"sklift-{k}{s}" for k in ("s", "t", "ct") for s in ("", "-reg")
    }
    for metric in ("qini_auc", "uplift@30"):
        gap = auto["vs_baselines"][metric]
        assert gap["gap"] >= -(1 if effect else 2) * gap["gap_se"], (metric, auto["chosen"], gap)
        if effect:
            assert auto[metric] > max(rows[f"sklift-{k}"][metric] for k in ("s", "t", "ct"))
    if not effect:  # nothing to learn: the noise spreads the folds, many candidates stay level and
        # no evidence moves auto off its default, the blend of S-learners on trees and a linear model
        assert sum(v["level_with_best"] for v in auto["cv"].values()) >= 3
        assert auto["chosen"] == "blend"


def test_auto_scores_ensembles_from_members_and_skips_inapplicable_candidates():
    data = _campaign(3000, 0.15, seed=4)
    spend = data.outcome * np.exp(np.random.default_rng(0).normal(4, 0.5, len(data.outcome)))
    auto = AutoUplift(candidates=("s-lr", "ens", "s", "s-2p"), cv=2, repeats=1).fit(
        data.X, data.treatment, spend
    )
    assert set(auto.cv_scores_) == {"ens", "s", "s-2p"}  # s-lr cannot rank a continuous outcome
    binary = AutoUplift(candidates=("s-lr", "ens", "s", "s-2p"), cv=2, repeats=2).fit(
        data.X, data.treatment, data.outcome
    )
    assert set(binary.cv_scores_) == {"s-lr", "ens", "s"}
    assert all(k in binary.cv_scores_ for k in binary.best_key_.split("+"))
    np.testing.assert_allclose(binary.predict_uplift(data.X[:5]), binary.model_.predict_uplift(data.X[:5]))
    with pytest.raises(ValueError, match="repeats"):
        AutoUplift(repeats=0).fit(data.X, data.treatment, data.outcome)


def _summary(**candidates):
    """`one_se_choice`-style summaries from (qini, uplift@30, combined, gap_to_best, gap_se, level)."""
    keys = ("qini_auc", "uplift@30", "combined", "gap_to_best", "gap_se", "level_with_best")
    return {k: dict(zip(keys, v, strict=True)) for k, v in candidates.items()}


def test_decide_keeps_the_default_when_candidates_tie_and_averages_the_level_ones_without_one():
    tie = _summary(
        blend=(0.10, 0.02, 0.0, 0.0, 0.0, True),
        s=(0.10, 0.02, 0.0, 0.0, 0.0, True),
        t=(0.10, 0.02, 0.0, 0.0, 0.0, True),
        ct=(0.02, 0.01, -2.0, 2.0, 0.1, False),
    )
    order = ("blend", "s", "t", "ct")
    assert decide(tie, order, "blend", 2.0, combine=True) == "blend"  # shrinkage to the default
    assert decide(tie, order, None, 2.0, combine=True) == "blend+s+t"  # the ensemble path
    assert decide(tie, order, None, 2.0, combine=False) == "blend"  # the simplest level one


def test_decide_leaves_the_default_only_for_a_clear_win_on_both_metrics():
    order = ("blend", "s", "t")
    # t beats the default by 1.5 standard errors: not enough, the default stays
    close = _summary(
        blend=(0.10, 0.02, -0.3, 0.6, 0.4, True),
        s=(0.11, 0.02, 0.0, 0.3, 0.4, True),
        t=(0.12, 0.03, 0.3, 0.0, 0.0, True),
    )
    assert decide(close, order, "blend", 2.0, combine=True) == "blend"
    # t beats it by 3 standard errors and on both metrics: t is averaged with the default (shrinkage),
    # not swapped in for it, and not mixed with the other level candidate (s)
    clear = _summary(
        blend=(0.10, 0.02, -0.6, 1.2, 0.4, False),
        s=(0.11, 0.02, 0.0, 0.3, 0.4, True),
        t=(0.12, 0.03, 0.6, 0.0, 0.0, True),
    )
    assert decide(clear, order, "blend", 2.0, combine=True) == "blend+t"
    assert decide(clear, order, "blend", 2.0, combine=False) == "t"
    assert decide(clear, order, None, 2.0, combine=True) == "s+t"  # no default: the level set
    # the same combined win bought with a worse uplift@30 is a trade, not a win: the default stays
    trade = _summary(
        blend=(0.10, 0.04, -0.6, 1.2, 0.4, False),
        s=(0.11, 0.02, 0.0, 0.3, 0.4, True),
        t=(0.14, 0.03, 0.6, 0.0, 0.0, True),
    )
    assert decide(trade, order, "blend", 2.0, combine=True) == "blend"


def test_one_se_rule_reports_each_candidates_gap_to_a_reference():
    # the same folds as above: complex leads simple by 2, 2, 2, -2 on the combined score
    simple = np.array([[0.10, 0.20], [0.10, 0.20], [0.10, 0.20], [0.30, 0.40]])
    complex_ = np.array([[0.20, 0.30], [0.20, 0.30], [0.20, 0.30], [0.00, 0.10]])
    _, summary = one_se_choice(
        {"complex": complex_, "simple": simple}, ("simple", "complex"), reference="complex"
    )
    assert summary["simple"]["lead_of_reference"] == pytest.approx(1.0)
    assert summary["simple"]["lead_of_reference_se"] == pytest.approx(1.0)
    assert summary["complex"]["lead_of_reference"] == 0.0
    _, plain = one_se_choice({"complex": complex_, "simple": simple}, ("simple", "complex"))
    assert "lead_of_reference" not in plain["simple"]  # no reference, no comparison


def _with_leads(summary, **leads):
    """Adds (lead_of_reference, lead_of_reference_se) per candidate, as `one_se_choice` with a reference."""
    for key, (lead, se) in leads.items():
        summary[key].update(lead_of_reference=lead, lead_of_reference_se=se)
    return summary


def test_decide_averages_in_an_anchor_the_default_does_not_clearly_lead():
    order = ("blend", "s", "t", "ct")
    anchors = ("s", "t")
    # weak signal: the default leads s by 0.5 SE and t by 3 SE; nothing beats the default
    weak = _with_leads(
        _summary(
            blend=(0.10, 0.02, 0.2, 0.0, 0.0, True),
            s=(0.10, 0.02, 0.1, 0.1, 0.2, True),
            t=(0.08, 0.01, -0.5, 0.7, 0.2, False),
            ct=(0.11, 0.02, 0.1, 0.1, 0.2, True),
        ),
        blend=(0.0, 0.0),
        s=(0.1, 0.2),
        t=(0.7, 0.2),
        ct=(0.1, 0.2),
    )
    assert decide(weak, order, "blend", 2.0, True, anchors, 1.0) == "blend+s"  # ct is no anchor
    assert decide(weak, order, "blend", 2.0, True, anchors, 0.25) == "blend"  # 0.5 SE > 0.25 SE
    assert decide(weak, order, "blend", 2.0, False, anchors, 1.0) == "blend"  # no averaging asked
    assert decide(weak, order, "blend", 2.0, True) == "blend"  # no anchors: the old rule
    # both anchors level: the better-scoring one is averaged in
    both = _with_leads({k: dict(v) for k, v in weak.items()}, t=(0.1, 0.2))
    both["t"]["combined"] = 0.15
    assert decide(both, order, "blend", 2.0, True, anchors, 1.0) == "blend+t"
    # strong signal: the default leads both anchors by more than one SE: kept alone
    strong = _with_leads({k: dict(v) for k, v in weak.items()}, s=(0.5, 0.2), t=(0.7, 0.2))
    assert decide(strong, order, "blend", 2.0, True, anchors, 1.0) == "blend"
    # summaries stored without the reference comparison add no anchor
    assert decide(_summary(**{k: tuple(v[m] for m in list(v)[:6]) for k, v in weak.items()}), order,
                  "blend", 2.0, True, anchors, 1.0) == "blend"  # fmt: skip
    # a default clearly beaten on both metrics is averaged with the winner, not with an anchor
    beaten = _with_leads(
        _summary(
            blend=(0.10, 0.02, -0.6, 1.2, 0.4, False),
            s=(0.10, 0.02, -0.6, 1.2, 0.4, False),
            t=(0.12, 0.03, 0.6, 0.0, 0.0, True),
        ),
        s=(0.0, 0.1),
        t=(-1.2, 0.4),
    )
    assert decide(beaten, ("blend", "s", "t"), "blend", 2.0, True, anchors, 1.0) == "blend+t"


def test_auto_averages_in_an_anchor_without_a_signal_and_keeps_a_default_that_leads_them():
    """Deterministic (random_state 0). No effect: the blend scores best on the folds but leads the
    T-learner by a fraction of a standard error, so T is averaged in (without anchors the blend
    stays alone). A strong effect: the blend leads both S and T by more than one standard error,
    so it is kept alone."""
    kwargs = dict(candidates=("blend", "s-lr", "s", "t"), cv=3, repeats=2)
    none = _campaign(4000, 0.0, seed=4)
    auto = AutoUplift(**kwargs).fit(none.X, none.treatment, none.outcome)
    t = auto.cv_scores_["t"]
    assert max(auto.cv_scores_, key=lambda k: auto.cv_scores_[k]["combined"]) == "blend"
    assert 0 < t["lead_of_reference"] <= t["lead_of_reference_se"]
    assert auto.best_key_ == "blend+t" and auto.model_.members == ("blend", "t")
    assert auto.model_.standardise
    alone = AutoUplift(**kwargs, anchors=()).fit(none.X, none.treatment, none.outcome)
    assert alone.best_key_ == "blend"
    strong = _campaign(4000, 0.3, seed=1)
    auto = AutoUplift(**kwargs).fit(strong.X, strong.treatment, strong.outcome)
    assert auto.best_key_ == "blend"
    for anchor in ("s", "t"):
        assert auto.cv_scores_[anchor]["lead_of_reference"] > auto.cv_scores_[anchor]["lead_of_reference_se"]


def test_auto_chooses_on_the_training_rows_only(monkeypatch):
    """`evaluate_models` hands `auto` the training rows and nothing else: every row the selector
    sees is a training row, and changing the test outcomes changes neither its choice nor its
    cross-validated scores."""
    train, test = _campaign(3000, 0.3, seed=7), _campaign(3000, 0.3, seed=8)
    seen = []
    fit = AutoUplift.fit

    def spy(self, X, treatment, outcome):
        seen.append((np.asarray(X, dtype=float).copy(), np.asarray(outcome).copy()))
        self.candidates = ("blend", "s-lr", "s", "t")  # fewer fits
        return fit(self, X, treatment, outcome)

    monkeypatch.setattr(AutoUplift, "fit", spy)
    first = {r["model"]: r for r in evaluate_models(train, test, ["auto"])}["auto"]
    flipped = CampaignData(test.X, test.treatment, 1.0 - test.outcome)
    second = {r["model"]: r for r in evaluate_models(train, flipped, ["auto"])}["auto"]
    assert len(seen) == 2
    for X, y in seen:
        np.testing.assert_array_equal(X, train.X.to_numpy(dtype=float))
        np.testing.assert_array_equal(y, train.outcome)
    assert first["chosen"] == second["chosen"] and first["cv"] == second["cv"]


def test_auto_keeps_its_default_unless_it_is_beaten_and_averages_the_level_candidates_then():
    data = _campaign(4000, 0.3, seed=6)
    kwargs = dict(candidates=("s-lr", "t-lr", "s", "ct"), cv=2, repeats=2)
    auto = AutoUplift(**kwargs, default="s").fit(data.X, data.treatment, data.outcome)
    level = [k for k in kwargs["candidates"] if auto.cv_scores_[k]["level_with_best"]]
    s = auto.cv_scores_["s"]
    best = max(auto.cv_scores_.values(), key=lambda v: v["combined"])
    if s["gap_to_best"] <= 2 * s["gap_se"] or not all(best[m] > s[m] for m in ("qini_auc", "uplift@30")):
        assert auto.best_key_ == "s"  # the default is left only when beaten by 2 SE on both metrics
    else:  # and then only half-way: averaged with the winner
        winner = max(auto.cv_scores_, key=lambda k: auto.cv_scores_[k]["combined"])
        assert auto.best_key_ == f"s+{winner}" and auto.model_.members == ("s", winner)
    # without a default (or with one that is not a candidate) the level set is averaged
    no_default = AutoUplift(**kwargs, default=None).fit(data.X, data.treatment, data.outcome)
    assert no_default.best_key_ == ("+".join(level) if len(level) > 1 else level[0])
    if len(level) > 1:
        assert no_default.model_.members == tuple(level) and no_default.model_.standardise


def test_blend_members_follow_the_outcome():
    assert make_model("blend", binary=True).members == ("s", "si-lr")
    assert make_model("blend", binary=False).members == ("s", "si-lr", "s-2p", "s-lr-2p")
    assert make_model("blend").standardise


def test_standardised_ensemble_puts_members_on_one_scale():
    data = _campaign(3000, 0.3, seed=5)
    ens = UpliftEnsemble(members=("s", "t-lr"), standardise=True).fit(data.X, data.treatment, data.outcome)
    train_parts = np.stack([m.predict_uplift(data.X) for m in ens.models_])
    centre, scale = train_parts.mean(axis=1), train_parts.std(axis=1)
    new = data.X[:7]
    parts = np.stack([m.predict_uplift(new) for m in ens.models_])
    expected = ((parts - centre[:, None]) / scale[:, None]).mean(axis=0) * scale.mean() + centre.mean()
    np.testing.assert_allclose(ens.predict_uplift(new), expected)
    # on the training rows the result keeps the members' average centre
    assert ens.predict_uplift(data.X).mean() == pytest.approx(centre.mean())


def test_auto_with_several_arms_scores_each_arm_against_control():
    from tests.uplift.test_learners import two_arm_data

    X, arm, y = two_arm_data(n=3000, seed=1)
    auto = AutoUplift(candidates=("s-lr", "t-lr", "s"), cv=2, repeats=1, control="ctl").fit(X, arm, y)
    assert list(auto.arms_) == ["a", "b"]
    assert auto.predict_uplift(X[:3]).shape == (3, 2)
    assert all(k in auto.cv_scores_ for k in auto.best_key_.split("+"))


def test_rule_choice_gives_each_rules_pick_from_one_summary():
    summary = _with_leads(
        _summary(
            blend=(0.10, 0.02, 0.0, 0.2, 0.1, False),
            s=(0.10, 0.02, -0.1, 0.3, 0.2, False),
            t=(0.09, 0.02, 0.1, 0.1, 0.2, True),
            ct=(0.12, 0.03, 0.2, 0.0, 0.0, True),
        ),
        blend=(0.0, 0.0),
        s=(0.1, 0.2),
        t=(-0.1, 0.2),
        ct=(-0.2, 0.1),
    )
    args = (("blend", "s", "t", "ct"), "blend", 2.0, True, ("s", "t"), 1.0)
    picks = {rule: rule_choice(rule, summary, *args) for rule in NESTED_RULES}
    assert picks == {
        "rule": decide(summary, *args),  # today's rule, unchanged
        "default": "blend",
        "default+anchor": "blend+t",  # the better-scoring anchor, whatever the standard errors
        "default+best": "blend+ct",
        "best": "ct",
    }
    assert rule_choice(
        "default+best", {**summary, "blend": {**summary["blend"], "combined": 1.0}}, *args
    ) == ("blend")  # the default is the best: nothing to average in
    with pytest.raises(ValueError, match="unknown choice rule"):
        rule_choice("luckiest", summary, *args)


NESTED = dict(candidates=("blend", "s-lr", "s", "t"), cv=3, repeats=1, nested=True, random_state=5)


def test_nested_cv_never_reads_the_outer_test_rows_when_choosing(monkeypatch):
    """Outer fold i's inner choice must not depend on block i: shuffling the features of block i's
    rows (within each arm x outcome stratum, so the folds stay the same) leaves the inner candidates'
    scores for outer fold i bit for bit the same, while the other folds' inner scores, which train
    on block i, and the rules' outer scores on block i change."""
    from sklearn.model_selection import StratifiedKFold

    import models.uplift.selection as selection

    data = _campaign(3000, 0.2, seed=9)
    X, t, y = data.X.to_numpy(), data.treatment, data.outcome
    strata = selection._strata(t, y)
    blocks = [test for _, test in StratifiedKFold(3, shuffle=True, random_state=5).split(X, strata)]
    shuffled = X.copy()
    rng = np.random.default_rng(0)
    for stratum in np.unique(strata[blocks[0]]):
        rows = blocks[0][strata[blocks[0]] == stratum]
        shuffled[rows] = X[rng.permutation(rows)]
    calls = []
    real = selection.one_se_choice

    def spy(scores, order, reference=None):
        calls.append({k: np.array(v) for k, v in scores.items()})
        return real(scores, order, reference)

    monkeypatch.setattr(selection, "one_se_choice", spy)
    first = AutoUplift(**NESTED).fit(X, t, y)
    n_calls = len(calls)
    second = AutoUplift(**NESTED).fit(shuffled, t, y)
    assert n_calls == len(calls) - n_calls == 1 + 3 + 1  # the choice, three inner choices, the rules
    before, after = calls[:n_calls], calls[n_calls:]
    for key in before[1]:  # outer fold 0's inner choice: the same scores
        np.testing.assert_array_equal(before[1][key], after[1][key])
    assert any(not np.array_equal(before[2][k], after[2][k]) for k in before[2])  # fold 1 trains on block 0
    assert first.nested_picks_[0] == second.nested_picks_[0]
    assert first.nested_scores_ != second.nested_scores_  # the picks are scored on block 0


def test_nested_cv_is_deterministic_and_refits_the_chosen_rules_pick():
    data = _campaign(3000, 0.2, seed=9)
    a = AutoUplift(**NESTED).fit(data.X, data.treatment, data.outcome)
    b = AutoUplift(**NESTED).fit(data.X, data.treatment, data.outcome)
    assert a.nested_skipped_ is None and a.rule_ in NESTED_RULES
    assert set(a.nested_scores_) == set(NESTED_RULES) and len(a.nested_picks_) == 3
    assert (a.rule_, a.best_key_, a.nested_scores_, a.nested_picks_) == (
        b.rule_, b.best_key_, b.nested_scores_, b.nested_picks_
    )  # fmt: skip
    assert a.best_key_ == a.choice_by_rule_[a.rule_]
    np.testing.assert_array_equal(a.predict_uplift(data.X[:50]), b.predict_uplift(data.X[:50]))
    other = AutoUplift(**{**NESTED, "random_state": 6}).fit(data.X, data.treatment, data.outcome)
    assert other.nested_scores_ != a.nested_scores_  # the seed drives the folds
    flat = AutoUplift(**{**NESTED, "nested": False}).fit(data.X, data.treatment, data.outcome)
    assert flat.nested_scores_ is None and flat.best_key_ == a.choice_by_rule_["rule"]
    # `auto` keeps today's rule (nested cross-validation did not improve it); `auto-nested` runs it
    assert make_model("auto").nested is False and make_model("auto-nested").nested is True


def test_auto_falls_back_on_tiny_data_and_refuses_an_outcome_without_response():
    data = _campaign(3000, 0.2, seed=9)
    tiny = AutoUplift(**NESTED).fit(data.X[:45], data.treatment[:45], data.outcome[:45])
    assert tiny.cv_skipped_ and tiny.nested_skipped_ == tiny.cv_skipped_
    assert (
        tiny.best_key_ == "blend" and tiny.cv_scores_ == {} and tiny.predict_uplift(data.X[:3]).shape == (3,)
    )
    # one class in one arm: no control row responds, so no fold can score a candidate
    y = np.where(data.treatment == 0, 0.0, data.outcome)
    silent = AutoUplift(**NESTED).fit(data.X, data.treatment, y)
    assert "no response in arm 0" in silent.cv_skipped_ and silent.best_key_ == "blend"
    two = AutoUplift(**{**NESTED, "cv": 2}).fit(data.X, data.treatment, data.outcome)
    assert "cv >= 3" in two.nested_skipped_ and two.rule_ == "rule" and two.cv_scores_
    with pytest.raises(ValueError, match="one value"):
        AutoUplift(**NESTED).fit(data.X, data.treatment, np.zeros(len(data.outcome)))


def _funnel_campaign(n: int, seed: int) -> CampaignData:
    """The mail lifts visits from 20% to 35% where x0 > 0 only; a visit converts with 10%, mail or
    not: conversion (~2-3%) carries the visit's signal, diluted by ten."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    t = rng.integers(0, 2, n)
    visit = (rng.random(n) < 0.2 + 0.15 * t * (X["x0"] > 0)).astype(float)
    conversion = visit * (rng.random(n) < 0.1)
    return CampaignData(X=X, treatment=t, outcome=conversion, gate=visit, gate_col="visit")


def test_auto_weighs_the_funnel_only_with_a_gate_and_fits_it_on_each_folds_own_gate(monkeypatch):
    from models.uplift.learners import FunnelLearner

    data = _funnel_campaign(6000, seed=0)
    kwargs = dict(candidates=("blend", "s", "t", "funnel"), cv=3, repeats=1)
    without = AutoUplift(**kwargs).fit(data.X, data.treatment, data.outcome)
    assert "funnel" not in without.cv_scores_ and "funnel" not in without.best_key_
    gates = []
    fit_arms = FunnelLearner._fit_arms

    def spy(self, X, t, y, gate=None):
        gates.append((len(y), np.asarray(gate).copy(), y.copy()))
        return fit_arms(self, X, t, y, gate=gate)

    monkeypatch.setattr(FunnelLearner, "_fit_arms", spy)
    auto = AutoUplift(**kwargs).fit(data.X, data.treatment, data.outcome, gate=data.gate)
    assert "funnel" in auto.cv_scores_
    # three training folds of two thirds of the rows, then the refit on every row when chosen
    assert [n for n, _, _ in gates][:3] == [4000] * 3
    for _, gate, y in gates:  # each fit got its own rows' gate, aligned with their outcomes
        assert ((y != 0) <= (gate == 1)).all() and gate.sum() > 3 * (y != 0).sum()
    assert applicable("funnel", binary=True, gated=True)
    assert not applicable("funnel", binary=True) and not applicable("funnel", binary=False, gated=True)
    assert applicable("funnel-2p", binary=False, gated=True)
    assert not applicable("funnel-2p", binary=False) and not applicable("funnel-2p", binary=True, gated=True)


def test_with_a_gate_the_default_is_the_blend_averaged_with_the_funnel_scored_from_its_members():
    data = _funnel_campaign(4000, seed=3)
    kwargs = dict(candidates=("blend", "funnel-blend", "s", "t", "funnel"), cv=3, repeats=1)
    gated = AutoUplift(**kwargs).fit(data.X, data.treatment, data.outcome, gate=data.gate)
    assert gated.default_ == "funnel-blend"
    # scored from the blend's and the funnel's held-out predictions: no fit of its own
    assert "funnel-blend" in gated.cv_scores_ and "funnel-blend" not in gated.fitted_keys_
    assert {"s", "si-lr", "funnel"} <= set(gated.fitted_keys_)
    # the anchors are weighed against the gated default: its lead over them is what the summary holds
    assert gated.cv_scores_["funnel-blend"]["lead_of_reference"] == 0
    assert gated.best_key_.split("+")[0] in ("funnel-blend", "s", "t", "funnel", "blend")
    assert gated.anchors_ == ("s", "t")
    # `gated_anchors=()`: no anchor guards the funnel default, the choice is `decide` without them
    bare = AutoUplift(**kwargs, gated_anchors=()).fit(data.X, data.treatment, data.outcome, gate=data.gate)
    assert bare.anchors_ == () and bare.choice_by_rule_["default+anchor"] == "funnel-blend"
    assert bare.best_key_ == decide(bare.cv_scores_, kwargs["candidates"], "funnel-blend", 2.0, True)
    plain = AutoUplift(**kwargs).fit(data.X, data.treatment, data.outcome)
    assert plain.default_ == "blend" and "funnel-blend" not in plain.cv_scores_
    assert plain.anchors_ == ("s", "t")  # without a gate the blend keeps its anchors
    assert plain.cv_scores_["blend"]["lead_of_reference"] == 0
    for key in ("funnel-blend", "funnel-blend+s"):
        assert takes_gate(key)
    assert not takes_gate("blend+s")
    # a spend outcome keeps the blend: the funnel is weighed on 0/1 outcomes only
    spend = data.outcome * 50.0
    assert AutoUplift(**kwargs).fit(data.X, data.treatment, spend, gate=data.gate).default_ == "blend"


def test_evaluate_models_hands_the_training_gate_to_models_that_take_one():
    train, test = _funnel_campaign(3000, seed=1), _funnel_campaign(3000, seed=2)
    rows = {r["model"]: r for r in evaluate_models(train, test, ["funnel", "s"])}
    assert np.isfinite(rows["funnel"]["qini_auc"])
    gateless = CampaignData(train.X, train.treatment, train.outcome)
    with pytest.raises(ValueError, match="funnel needs a gate"):
        evaluate_models(gateless, test, ["funnel"])
