"""The sequential view of an event log: looks, verdicts, and the fixed horizon's refusal to call early."""

from __future__ import annotations

import pytest

from experiments.ab.analysis import analyze
from experiments.ab.sequential_report import sequential_report
from experiments.ab.simulation import SCENARIOS, ArmTruth, Scenario, simulate_events


@pytest.fixture(scope="module")
def strong_events():
    # Units arrive every 10 minutes: 2,000 units span about 14 days.
    scenario = Scenario("strong", ArmTruth(0.05, 0.5, 100.0), ArmTruth(0.15, 0.5, 100.0))
    return simulate_events(scenario, 2000, seed=3, experiment="e")


def test_looks_end_on_the_full_log(strong_events):
    report = sequential_report(strong_events, "e", method="msprt", metric="conversion")
    (comp,) = report["comparisons"]
    looks = comp["looks"]
    assert 12 <= len(looks) <= 15
    assert [x["units"] for x in looks] == sorted(x["units"] for x in looks)
    last = analyze(strong_events, "e", metrics=["conversion"], cuped=False)["comparisons"][0]
    assert looks[-1]["units"] == 2000
    assert looks[-1]["estimate"] == pytest.approx(last["abs_lift"])
    p = [x["p_value"] for x in looks]
    assert p == sorted(p, reverse=True)  # always-valid p-values never go back up
    assert comp["verdict"].startswith("significant increase at look")


def test_group_sequential_needs_a_plan_and_uses_it(strong_events):
    with pytest.raises(ValueError, match="planned units"):
        sequential_report(strong_events, "e", method="group-sequential")
    report = sequential_report(strong_events, "e", method="group-sequential", planned_units=1000)
    (comp,) = report["comparisons"]
    assert comp["plan_complete"] and all("bound" in x for x in comp["looks"])
    bounds = [x["bound"] for x in comp["looks"]]
    assert bounds == sorted(bounds, reverse=True) and bounds[-1] < 2.2
    assert "significant increase" in comp["verdict"]


def test_fixed_horizon_refuses_to_call_early(strong_events):
    early = sequential_report(strong_events, "e", method="fixed", planned_units=5000)
    (comp,) = early["comparisons"]
    assert comp["verdict"].startswith("not yet conclusive") and not comp["plan_complete"]
    assert any(x["naive_reject"] for x in comp["looks"])  # peeking would have called it
    done = sequential_report(strong_events, "e", method="fixed", planned_units=1000)
    assert done["comparisons"][0]["verdict"] == "significant increase"


def test_aa_log_stays_quiet():
    events = simulate_events(SCENARIOS["recommender"].aa(), 2000, seed=5, experiment="aa")
    report = sequential_report(events, "aa", method="msprt", metric="ctr")
    assert report["comparisons"][0]["verdict"] == "continue: no boundary crossed yet"
