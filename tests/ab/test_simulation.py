"""The statistics checked against known truth: A/A false positives, power vs the calculator, coverage."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments.ab import power as calc
from experiments.ab.analysis import analyze, analyze_units, unit_table
from experiments.ab.simulation import (
    SCENARIOS,
    ArmTruth,
    Scenario,
    run_simulation,
    simulate_events,
    simulate_units,
    true_metrics,
)


def test_closed_form_truth_matches_a_large_simulation():
    scenario = SCENARIOS["coupon"]
    units = simulate_units(scenario, 200_000, seed=11)
    for name, arm in (("control", scenario.control), ("treatment", scenario.treatment)):
        truth = true_metrics(scenario, arm)
        got = units[units.variant == name]
        assert got.converted.mean() == pytest.approx(truth["conversion"], rel=0.03)
        assert got.clicks.sum() / got.exposures.sum() == pytest.approx(truth["ctr"], rel=0.02)
        assert got.purchases.mean() == pytest.approx(truth["orders_per_shopper"], rel=0.03)
        assert got.revenue.mean() == pytest.approx(truth["revenue_per_shopper"], rel=0.04)
    assert units.pre_value.corr(units.revenue) > 0.05  # the CUPED covariate carries information


def test_event_log_and_unit_table_are_the_same_draws():
    units = simulate_units(SCENARIOS["coupon"], 3000, seed=7).sort_index()
    events = simulate_events(SCENARIOS["coupon"], 3000, seed=7)
    assert set(events.event_type) == {"exposure", "click", "purchase"}
    pd.testing.assert_frame_equal(unit_table(events, "sim").units.sort_index(), units, check_exact=False)
    a = analyze(events, "sim")
    b = analyze_units(units)
    assert [r["p_value"] for r in a["comparisons"]] == pytest.approx([r["p_value"] for r in b["comparisons"]])


def test_simulation_is_reproducible_from_the_seed():
    scenario = SCENARIOS["recommender"]
    assert simulate_units(scenario, 500, seed=5).equals(simulate_units(scenario, 500, seed=5))
    assert not simulate_units(scenario, 500, seed=5).equals(simulate_units(scenario, 500, seed=6))


def test_aa_false_positive_rate_is_five_percent():
    result = run_simulation(SCENARIOS["recommender"], mode="aa", runs=200, n_units=2000, seed=0)
    assert result.runs == 200 and result.true_lift == 0.0
    assert abs(result.rejection_rate - 0.05) <= 0.02, result
    assert abs(result.ci_coverage - 0.95) <= 0.03


def test_measured_power_matches_the_calculator():
    # A strong effect keeps the calculator's sample size (and the test) small.
    scenario = Scenario("fast", ArmTruth(0.10, 0.4, 100.0), ArmTruth(0.14, 0.4, 100.0), mean_exposures=3.0)
    result = run_simulation(scenario, mode="power", runs=200, seed=0)
    truth_c, truth_t = true_metrics(scenario, scenario.control), true_metrics(scenario, scenario.treatment)
    lift = truth_t["conversion"] - truth_c["conversion"]
    assert result.n_units == 2 * calc.sample_size_proportion(truth_c["conversion"], lift, relative=False)
    assert result.expected_rate == pytest.approx(0.8, abs=0.002)
    assert abs(result.rejection_rate - result.expected_rate) <= 0.05, result
    assert result.mean_estimated_lift == pytest.approx(result.true_lift, rel=0.1)
    assert abs(result.ci_coverage - 0.95) <= 0.04


def test_bad_simulation_arguments():
    scenario = SCENARIOS["recommender"]
    with pytest.raises(ValueError, match="mode"):
        run_simulation(scenario, mode="bb")
    with pytest.raises(ValueError, match="conversion"):
        run_simulation(scenario, mode="power", metric="ctr", runs=1)
    with pytest.raises(ValueError, match="unknown metric"):
        run_simulation(scenario, metric="nope", runs=1)
    with pytest.raises(ValueError):
        ArmTruth(ctr=1.5, buy_rate=0.1, order_value=10)


@pytest.fixture(scope="module")
def marketplace(tmp_path_factory):
    from features.synth.generator import generate_marketplace

    out = tmp_path_factory.mktemp("market")
    generate_marketplace(out, "tiny", seed=3)
    return out


def test_coupon_policies_on_the_generated_marketplace(marketplace):
    from experiments.ab.simulation import coupon_policy_scenario

    scenario = coupon_policy_scenario(marketplace)
    truth_a, truth_b = scenario.truth("control"), scenario.truth("treatment")
    units = scenario.units(200_000, seed=1)
    for variant, truth in (("control", truth_a), ("treatment", truth_b)):
        got = units[units.variant == variant]
        assert got.converted.mean() == pytest.approx(truth["conversion"], rel=0.03)
        assert got.revenue.mean() == pytest.approx(truth["revenue_per_shopper"], rel=0.04)
    assert truth_b["conversion"] != truth_a["conversion"]
    assert units.pre_value.corr(units.revenue) > 0  # real pre-period spend predicts spend


@pytest.mark.slow
def test_marketplace_false_positive_rate_and_power(marketplace):
    from experiments.ab.simulation import coupon_policy_scenario

    scenario = coupon_policy_scenario(marketplace)
    aa = run_simulation(scenario, mode="aa", runs=200, n_units=2000, seed=0)
    assert abs(aa.rejection_rate - 0.05) <= 0.02, aa
    power = run_simulation(scenario, mode="power", runs=200, seed=0)
    assert abs(power.rejection_rate - power.expected_rate) <= 0.05, power
