"""Analysis numbers against scipy/statsmodels on fixed data, SRM, CUPED, corrections, horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from experiments.ab.analysis import (
    analyze,
    analyze_units,
    compare_means,
    compare_ratios,
    cuped_theta,
    srm_check,
    unit_table,
)
from experiments.ab.simulation import SCENARIOS, run_simulation

T0 = pd.Timestamp("2026-03-01", tz="UTC")


def make_events(units: dict[str, tuple[str, int, int, list[float]]], pre: dict | None = None) -> pd.DataFrame:
    """units: id -> (variant, exposures, clicks, purchase values); exposures a minute apart from T0,
    clicks an hour after T0, purchases two hours after."""
    ids = np.array(list(units), dtype=object)
    variant = np.array([u[0] for u in units.values()], dtype=object)
    n_exp, n_click = (np.array([u[k] for u in units.values()], dtype=int) for k in (1, 2))
    n_buy = np.array([len(u[3]) for u in units.values()], dtype=int)
    values = np.array([v for u in units.values() for v in u[3]], dtype=float)
    minute = np.concatenate([np.arange(k) for k in n_exp]) if len(n_exp) else np.array([], int)
    parts = []
    for event_type, counts, value, offset in (
        ("exposure", n_exp, 0.0, pd.to_timedelta(minute, unit="min")),
        ("click", n_click, 0.0, pd.Timedelta(hours=1)),
        ("purchase", n_buy, values, pd.Timedelta(hours=2)),
    ):
        rows = np.repeat(np.arange(len(ids)), counts)
        frame = pd.DataFrame(
            {
                "experiment": "exp",
                "variant": variant[rows],
                "unit_id": ids[rows],
                "event_type": event_type,
                "value": value,
                "ts": T0 + offset,
            }
        )
        if pre is not None:
            frame["pre_value"] = np.array([pre[u] for u in ids])[rows]
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def random_units(seed=0, n=300, lift=0.0, shares=(0.5, 0.5)):
    rng = np.random.default_rng(seed)
    units, pre = {}, {}
    for i in range(n):
        variant = "control" if rng.random() < shares[0] else "treatment"
        keen = rng.gamma(0.5, 2.0)
        n_exp = 1 + rng.poisson(10)
        clicks = rng.binomial(n_exp, min(0.9, 0.15 * keen * (1 + lift * (variant == "treatment"))))
        buys = rng.binomial(clicks, 0.4)
        units[f"u{i}"] = (variant, n_exp, clicks, list(rng.lognormal(4, 0.5, buys).round(2)))
        pre[f"u{i}"] = float(rng.poisson(30 * keen))
    return units, pre


def test_welch_matches_scipy_and_statsmodels():
    rng = np.random.default_rng(3)
    y_t, y_c = rng.normal(1.2, 2.0, 80), rng.normal(1.0, 1.0, 120)
    row = compare_means(y_t, y_c)
    cm = CompareMeans(DescrStatsW(y_t), DescrStatsW(y_c))
    _, p, _ = cm.ttest_ind(usevar="unequal")
    assert row["p_value"] == pytest.approx(p, rel=1e-10)
    assert row["abs_ci"] == pytest.approx(list(cm.tconfint_diff(usevar="unequal")), rel=1e-10)
    assert row["p_value"] == pytest.approx(stats.ttest_ind(y_t, y_c, equal_var=False).pvalue, rel=1e-12)
    # Delta-method relative lift: se = sqrt(vt/mc^2 + mt^2 vc/mc^4).
    mt, mc = y_t.mean(), y_c.mean()
    se = np.sqrt(y_t.var(ddof=1) / 80 / mc**2 + mt**2 * y_c.var(ddof=1) / 120 / mc**4)
    assert row["rel_lift"] == pytest.approx(mt / mc - 1)
    rel = mt / mc - 1
    assert row["rel_ci"] == pytest.approx([rel - 1.959964 * se, rel + 1.959964 * se], rel=1e-5)


def test_ratio_delta_method_matches_linearisation():
    rng = np.random.default_rng(5)
    den_t, den_c = 1 + rng.poisson(4, 400), 1 + rng.poisson(4, 500)
    num_t, num_c = rng.binomial(den_t, 0.12), rng.binomial(den_c, 0.10)
    row = compare_ratios(num_t, den_t, num_c, den_c)

    # Independent check: the delta-method variance equals var of the linearised unit values
    # (y - R x) / mean(x), divided by n.
    def var_ratio(num, den):
        r = num.sum() / den.sum()
        return np.var((num - r * den) / den.mean(), ddof=1) / len(num)

    se = np.sqrt(var_ratio(num_t, den_t) + var_ratio(num_c, den_c))
    diff = num_t.sum() / den_t.sum() - num_c.sum() / den_c.sum()
    assert row["abs_lift"] == pytest.approx(diff)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(diff) / se), rel=1e-9)
    assert row["abs_ci"][1] - row["abs_ci"][0] == pytest.approx(2 * 1.959964 * se, rel=1e-5)


def test_unit_table_counts_only_events_after_first_exposure():
    events = make_events({"a": ("control", 2, 1, [10.0]), "b": ("treatment", 1, 0, [])})
    early = {
        "experiment": "exp",
        "variant": "control",
        "unit_id": "a",
        "event_type": "purchase",
        "value": 99.0,
        "ts": T0 - pd.Timedelta(days=1),
    }
    stray = {**early, "unit_id": "ghost", "ts": T0}
    table = unit_table(pd.concat([events, pd.DataFrame([early, stray])]), "exp")
    a = table.units.loc["a"]
    assert (a.exposures, a.clicks, a.purchases, a.revenue, a.converted) == (2, 1, 1, 10.0, 1.0)
    assert table.dropped == {
        "units_in_several_variants": 0,
        "events_of_unexposed_units": 1,
        "events_before_exposure": 1,
    }


def test_units_seen_in_two_variants_are_dropped_and_counted():
    events = make_events({"a": ("control", 1, 0, []), "b": ("treatment", 1, 0, [])})
    twin = events.iloc[[0]].assign(variant="treatment")
    table = unit_table(pd.concat([events, twin]), "exp")
    assert list(table.units.index) == ["b"]
    assert table.dropped["units_in_several_variants"] == 1


def test_full_report_matches_reference_computations():
    units, pre = random_units(seed=1, n=600, lift=0.8)
    events = make_events(units, pre)
    report = analyze(events, "exp", cuped=False, correction="holm")
    ut = unit_table(events, "exp").units
    t, c = ut[ut.variant == "treatment"], ut[ut.variant == "control"]
    rows = {r["metric"]: r for r in report["comparisons"]}
    for metric, col in (
        ("conversion", "converted"),
        ("revenue_per_shopper", "revenue"),
        ("orders_per_shopper", "purchases"),
    ):
        ref = stats.ttest_ind(t[col], c[col], equal_var=False)
        assert rows[metric]["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
        assert rows[metric]["abs_lift"] == pytest.approx(t[col].mean() - c[col].mean())
    assert rows["ctr"]["treatment_value"] == pytest.approx(t.clicks.sum() / t.exposures.sum())
    raw = [rows[m]["p_value"] for m in ("conversion", "ctr", "revenue_per_shopper", "orders_per_shopper")]
    holm = multipletests(raw, method="holm")[1]
    assert [
        rows[m]["p_adjusted"] for m in ("conversion", "ctr", "revenue_per_shopper", "orders_per_shopper")
    ] == pytest.approx(list(holm))
    bh = analyze(events, "exp", cuped=False, correction="bh")
    assert [r["p_adjusted"] for r in bh["comparisons"]] == pytest.approx(
        list(multipletests(raw, method="fdr_bh")[1])
    )
    assert report["status"] == "conclusive"
    assert rows["ctr"]["verdict"] == "significant increase"


def test_cuped_uses_theta_and_shrinks_the_interval():
    units, pre = random_units(seed=2, n=600)
    events = make_events(units, pre)
    plain = analyze(events, "exp", metrics=["orders_per_shopper"], cuped=False)["comparisons"][0]
    adj = analyze(events, "exp", metrics=["orders_per_shopper"])["comparisons"][0]
    assert adj["cuped"] and not plain["cuped"]
    width = lambda r: r["abs_ci"][1] - r["abs_ci"][0]  # noqa: E731
    assert width(adj) < 0.9 * width(plain)
    ut = unit_table(events, "exp").units
    x, y = ut.pre_value.to_numpy(), ut.purchases.to_numpy(float)
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    assert cuped_theta(y, x) == pytest.approx(theta)
    y_adj = y - theta * (x - x.mean())
    is_t = (ut.variant == "treatment").to_numpy()
    ref = stats.ttest_ind(y_adj[is_t], y_adj[~is_t], equal_var=False)
    assert adj["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    # Variance reduction: share of the lift estimate's variance removed.
    var_lift = lambda v: v[is_t].var(ddof=1) / is_t.sum() + v[~is_t].var(ddof=1) / (~is_t).sum()  # noqa: E731
    assert adj["variance_reduction"] == pytest.approx(1 - var_lift(y_adj) / var_lift(y))
    assert adj["variance_reduction"] > 0.2 and plain["variance_reduction"] is None


def ratio_cuped_reference(num, den, pre, is_t):
    """CUPED for a ratio, written independently: theta by least squares of the linearised unit
    values on the covariate; the variance of each adjusted ratio by the delta-method form
    var(R) + theta^2 var(mean x) - 2 theta cov(R, mean x) (Deng et al. 2013)."""
    lin = np.empty(len(num))
    for g in (is_t, ~is_t):
        r = num[g].sum() / den[g].sum()
        lin[g] = r + (num[g] - r * den[g]) / den[g].mean()
    design = np.column_stack([np.ones_like(pre), pre])
    theta = np.linalg.lstsq(design, lin, rcond=None)[0][1]
    out = []
    for g in (is_t, ~is_t):
        y, d, x, n = num[g], den[g], pre[g], g.sum()
        r = y.sum() / d.sum()
        c = np.cov(np.vstack([y, d, x]))  # rows: num, den, covariate
        var_r = (c[0, 0] - 2 * r * c[0, 1] + r**2 * c[1, 1]) / d.mean() ** 2 / n
        cov_rx = (c[0, 2] - r * c[1, 2]) / d.mean() / n
        var_adj = var_r + theta**2 * c[2, 2] / n - 2 * theta * cov_rx
        out.append((r - theta * (x.mean() - pre.mean()), var_adj, var_r))
    return out


def test_ratio_cuped_matches_an_independent_computation():
    rng = np.random.default_rng(11)
    n = 500
    keen = rng.gamma(2.0, 0.5, n)
    is_t = rng.random(n) < 0.45
    den = 1 + rng.poisson(3 + 2 * keen)
    num = rng.binomial(den, np.clip(0.05 * keen * np.where(is_t, 1.2, 1.0), 0, 1)).astype(float)
    pre = rng.poisson(8 * keen).astype(float)
    row = compare_ratios(num[is_t], den[is_t], num[~is_t], den[~is_t], covariate=(pre[is_t], pre[~is_t]))
    (rt, vt, plain_t), (rc, vc, plain_c) = ratio_cuped_reference(num, den.astype(float), pre, is_t)
    assert row["treatment_value"] == pytest.approx(rt, rel=1e-10)
    assert row["control_value"] == pytest.approx(rc, rel=1e-10)
    se = np.sqrt(vt + vc)
    assert row["abs_ci"] == pytest.approx([rt - rc - 1.959964 * se, rt - rc + 1.959964 * se], rel=1e-5)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(rt - rc) / se), rel=1e-8)
    assert row["variance_reduction"] == pytest.approx(1 - (vt + vc) / (plain_t + plain_c), rel=1e-8)
    assert row["variance_reduction"] > 0.1
    # Without the covariate the same call is the plain delta-method comparison (and raw ratios).
    plain = compare_ratios(num[is_t], den[is_t], num[~is_t], den[~is_t])
    assert plain["treatment_value"] == pytest.approx(num[is_t].sum() / den[is_t].sum())
    assert "variance_reduction" not in plain
    with pytest.raises(ValueError, match="one value per unit"):
        compare_ratios(num[is_t], den[is_t], num[~is_t], den[~is_t], covariate=(pre[:3], pre[~is_t]))


def test_report_applies_ratio_cuped_behind_the_cuped_switch():
    units, pre = random_units(seed=2, n=600)
    events = make_events(units, pre)
    ut = unit_table(events, "exp").units
    t, c = ut[ut.variant == "treatment"], ut[ut.variant == "control"]
    on = analyze(events, "exp", metrics=["ctr"])["comparisons"][0]
    off = analyze(events, "exp", metrics=["ctr"], cuped=False)["comparisons"][0]
    expected = compare_ratios(
        t.clicks, t.exposures, c.clicks, c.exposures, covariate=(t.pre_value, c.pre_value)
    )
    assert on["cuped"] and on["abs_ci"] == pytest.approx(expected["abs_ci"])
    assert on["variance_reduction"] == pytest.approx(expected["variance_reduction"])
    assert not off["cuped"] and off["variance_reduction"] is None
    assert off["treatment_value"] == pytest.approx(t.clicks.sum() / t.exposures.sum())
    # No covariate column: nothing to adjust with, whatever the switch says.
    bare = analyze(make_events(units), "exp", metrics=["ctr"])["comparisons"][0]
    assert not bare["cuped"] and bare["abs_ci"] == pytest.approx(off["abs_ci"])


def test_ratio_cuped_narrows_the_ci_and_keeps_the_aa_false_positive_rate():
    # The simulated pre-period spend comes from the same latent keenness that drives clicks.
    scenario = SCENARIOS["recommender"]
    plain, adj = (
        run_simulation(scenario, mode="aa", runs=300, n_units=1000, metric="ctr", seed=3, cuped=cuped)
        for cuped in (False, True)
    )
    assert adj.mean_ci_width < 0.85 * plain.mean_ci_width  # about 0.77 (36% less variance)
    # Within 3 standard errors of 300 runs (1.26 points) of the nominal 5% and 95%.
    assert 0.012 <= adj.rejection_rate <= 0.088
    assert adj.ci_coverage >= 0.912
    # Under a real effect the adjusted estimate stays centred on the true lift.
    truth = scenario.truth("treatment")["ctr"] - scenario.truth("control")["ctr"]
    lifts = [
        analyze_units(scenario.units(1000, seed=s), metrics=["ctr"])["comparisons"][0]["abs_lift"]
        for s in range(60)
    ]
    assert abs(np.mean(lifts) - truth) < 3 * np.std(lifts, ddof=1) / np.sqrt(len(lifts))


def test_srm_flags_a_skewed_split():
    units, _ = random_units(seed=4, n=2000, shares=(0.55, 0.45))
    report = analyze(make_events(units), "exp")
    assert report["srm"]["flagged"] and report["srm"]["p_value"] < 0.001
    assert report["status"] == "invalid: sample ratio mismatch"
    assert {r["verdict"] for r in report["comparisons"]} == {"invalid: sample ratio mismatch"}
    # The same counts are fine when the configured weights were 55/45.
    ok = analyze(make_events(units), "exp", expected_shares={"control": 0.55, "treatment": 0.45})
    assert not ok["srm"]["flagged"]
    chi2, p = stats.chisquare([1100, 900], [1000, 1000])
    assert srm_check({"a": 1100, "b": 900}, {"a": 0.5, "b": 0.5})["p_value"] == pytest.approx(p)


def test_fixed_horizon_says_not_yet_conclusive():
    units, _ = random_units(seed=1, n=600, lift=0.8)
    report = analyze(make_events(units), "exp", planned_units=1000)
    assert report["status"] == "not yet conclusive"
    assert {r["verdict"] for r in report["comparisons"]} == {"not yet conclusive"}
    assert analyze(make_events(units), "exp", planned_units=150)["status"] == "conclusive"


def test_guardrail_breach_is_reported_outside_the_correction():
    units, _ = random_units(seed=1, n=600, lift=0.8)
    report = analyze(
        make_events(units),
        "exp",
        metrics=["conversion"],
        guardrails={"orders_per_shopper": "increase", "ctr": "decrease"},
    )
    rows = {r["metric"]: r for r in report["comparisons"]}
    assert rows["orders_per_shopper"]["guardrail"]
    assert rows["orders_per_shopper"]["verdict"] == "guardrail breached"
    assert rows["ctr"]["verdict"] == "guardrail ok"
    # Only the decision metric is corrected: one test, so Holm leaves its p-value unchanged.
    assert rows["conversion"]["p_adjusted"] == pytest.approx(rows["conversion"]["p_value"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(metrics=["nope"]), "unknown metric"),
        (dict(guardrails={"ctr": "sideways"}), "harmful direction"),
        (dict(correction="bonferroni"), "correction"),
        (dict(control="missing"), "control variant"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    units, _ = random_units(n=50)
    with pytest.raises(ValueError, match=message):
        analyze(make_events(units), "exp", **kwargs)


def test_bad_event_logs_are_refused():
    units, _ = random_units(n=50)
    events = make_events(units)
    with pytest.raises(ValueError, match="lacks columns"):
        analyze(events.drop(columns="ts"), "exp")
    with pytest.raises(ValueError, match="no events for experiment"):
        analyze(events, "other")
    with pytest.raises(ValueError, match="no exposure events"):
        analyze(events[events.event_type != "exposure"], "exp")
