import json

import pytest
from typer.testing import CliRunner

from crosscart.cli import app

KEYS = {
    "round",
    "strategy",
    "profit_vs_oracle",
    "true_spend",
    "budget",
    "policy_value_low",
    "policy_value_high",
    "realized_profit",
}


TINY = "campaign simulate-loop --rounds 3 --budget 2000 --seed 3 --scale tiny --json".split()


@pytest.fixture(scope="module")
def tiny_run():
    result = CliRunner().invoke(app, TINY)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_simulate_loop_json_on_tiny_keeps_the_contract_and_the_budget(tiny_run):
    rows = [json.loads(line) for line in tiny_run.splitlines() if line.startswith("{")]
    assert len(rows) == 9
    assert {(r["round"], r["strategy"]) for r in rows} == {
        (i, s) for i in (1, 2, 3) for s in ("closed_loop", "no_exploration", "response_model")
    }
    for r in rows:
        assert KEYS <= set(r)
        assert r["budget"] == 2000
        assert 0 < r["true_spend"] <= r["budget"], r  # never over budget, in truth
    loop = [r for r in rows if r["strategy"] == "closed_loop"]
    assert loop[0]["policy_value_low"] is None  # nothing randomised logged before the first round
    assert all(r["explored"] > 0 for r in loop)
    # the probe's share shrinks by round (0.1 / sqrt(round) by default)
    assert [r["explore_share"] for r in loop] == pytest.approx([0.1, 0.1 / 2**0.5, 0.1 / 3**0.5])
    for r in loop[1:]:
        assert r["policy_value_low"] <= r["policy_value_high"]
    # per-round diagnostics: randomised rows accumulate, effects are compared with the truth, and the
    # oracle that holds out the same share of its audience earns less than the one that does not
    assert [r["randomized_rows"] for r in loop][0] == 0
    assert all(a["randomized_rows"] < b["randomized_rows"] for a, b in zip(loop[:-1], loop[1:], strict=True))
    for r in rows:
        assert -1 <= r["uplift_corr"] <= 1
        assert 0 < r["design_oracle_profit"] <= r["oracle_profit"]
        assert abs(r["profit_vs_design_oracle"]) >= abs(r["profit_vs_oracle"])
    # the response model targets likely buyers, not persuadable ones: it trails today's planner
    assert all(
        a["profit_vs_oracle"] < b["profit_vs_oracle"]
        for a, b in zip(
            [r for r in rows if r["strategy"] == "response_model"],
            [r for r in rows if r["strategy"] == "no_exploration"],
            strict=True,
        )
    )


def test_simulate_loop_is_deterministic_with_a_seed(tiny_run):
    """The same seed gives the same rounds: the marketplace, the plans, the Thompson probe's draws."""
    again = CliRunner().invoke(app, TINY)
    assert again.exit_code == 0, again.output
    assert again.stdout == tiny_run


def test_simulate_loop_refuses_bad_settings():
    for budget in ("0", "inf", "nan"):  # an infinite budget printed `Infinity`, which is not JSON
        result = CliRunner().invoke(app, ["campaign", "simulate-loop", "--budget", budget, "--scale", "tiny"])
        assert result.exit_code == 2, budget
        assert "budget" in result.output
    result = CliRunner().invoke(app, ["campaign", "simulate-loop", "--budget", "10", "--scale", "huge"])
    assert result.exit_code == 2
    result = CliRunner().invoke(
        app, ["campaign", "simulate-loop", "--budget", "10", "--scale", "tiny", "--learner", "oracle"]
    )
    assert result.exit_code == 2
    assert "learner" in result.output


def test_simulate_loop_text_shows_forecast_beside_policy_value_and_warns_on_disagreement():
    result = CliRunner().invoke(
        app,
        ["campaign", "simulate-loop", "--rounds", "2", "--budget", "2000", "--seed", "3", "--scale", "tiny"],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "vs oracle" in line]
    assert len(lines) == 6 and all("model forecast" in line for line in lines)
    assert all("policy value DR [" in line or "policy value IPS [" in line for line in lines[3:])
    json_rows = (
        CliRunner()
        .invoke(
            app,
            [
                "campaign",
                "simulate-loop",
                "--rounds",
                "2",
                "--budget",
                "2000",
                "--seed",
                "3",
                "--scale",
                "tiny",
                "--json",
            ],
        )
        .stdout.splitlines()
    )
    flagged = [json.loads(r)["policy_value_disagrees"] for r in json_rows if r.startswith("{")]
    assert [("WARNING" in line) for line in lines] == [bool(f) for f in flagged]
