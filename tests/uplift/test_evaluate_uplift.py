"""`crosscart evaluate uplift` and its protocol: row selection, pooling, encoding, leak guard, split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from crosscart.cli import app
from models.uplift.simulate import hillstrom_like
from training.evaluate_uplift import load_campaign, parse_split, split_campaign


@pytest.fixture(scope="module")
def hillstrom():
    data, truth = hillstrom_like(n=4000, seed=11)
    return data, truth


def test_simulator_has_hillstrom_shape_and_rates():
    data, truth = hillstrom_like(n=64_000, seed=0)
    assert list(data.columns) == [
        "recency", "history_segment", "history", "mens", "womens", "zip_code",
        "newbie", "channel", "segment", "visit", "conversion", "spend",
    ]  # fmt: skip
    rates = data.groupby("segment")[["visit", "conversion", "spend"]].mean()
    # the real file: visits 10.6%, 18.3%, 15.1%; conversions 0.57%, 1.25%, 0.88%; spend $0.65-$1.42
    assert 0.095 < rates.loc["No E-Mail", "visit"] < 0.115
    assert 0.17 < rates.loc["Mens E-Mail", "visit"] < 0.195
    assert 0.14 < rates.loc["Womens E-Mail", "visit"] < 0.165
    assert 0.004 < rates.loc["No E-Mail", "conversion"] < 0.008
    assert 0.009 < rates.loc["Mens E-Mail", "conversion"] < 0.014
    assert 0.006 < rates.loc["Womens E-Mail", "conversion"] < 0.012
    assert 0.8 < rates.loc["Womens E-Mail", "spend"] < 1.4
    assert 0.3 < data["mens"].mean() < 0.6 and 0.3 < data["womens"].mean() < 0.6  # ~0.55 each, some both
    assert 0.5 < rates.loc["No E-Mail", "spend"] < 0.9 and 1.0 < rates.loc["Mens E-Mail", "spend"] < 1.7
    orders = data.loc[data["spend"] > 0, "spend"]
    assert (orders >= 29.99).all() and (orders <= 499).all() and orders.mean() > 1.1 * orders.median()
    assert ((data["spend"] > 0) == (data["conversion"] == 1)).all() and (
        data["conversion"] <= data["visit"]
    ).all()
    assert set(data["zip_code"]) == {"Urban", "Surburban", "Rural"}  # spelt as in the real file
    assert set(data["history_segment"].str[:2]) == {f"{i})" for i in range(1, 8)}
    effect = (truth["p_mens"] + truth["p_womens"]) / 2 - truth["p_control"]
    assert effect.std() > 0.02  # heterogeneous, so targeting can pay
    conversion_effect = truth["conversion_mens"] - truth["conversion_control"]
    assert conversion_effect.std() < 0.5 * effect.std()  # a weak signal on conversion


def test_load_pools_treatment_values_encodes_strings_and_drops_outcome_columns(hillstrom):
    data, _ = hillstrom
    campaign = load_campaign(data, "segment", "Mens E-Mail, Womens E-Mail", "No E-Mail", "visit")
    assert len(campaign.outcome) == len(data)
    assert campaign.treatment.sum() == (data["segment"] != "No E-Mail").sum()
    assert set(campaign.dropped) == {"conversion", "spend"}  # measured after the e-mail
    # a post-treatment column not nested with the outcome is caught by its imbalance between arms
    clicks = data.assign(clicks=(data["segment"] != "No E-Mail") * 3 + np.arange(len(data)) % 2)
    assert "clicks" in load_campaign(clicks, "segment", "Mens E-Mail", "No E-Mail", "visit").dropped
    assert "zip_code_Urban" in campaign.X.columns and "segment" not in campaign.X.columns
    assert all(pd.api.types.is_numeric_dtype(d) for d in campaign.X.dtypes)
    one_arm = load_campaign(data, "segment", "Mens E-Mail", "No E-Mail", "visit")
    assert len(one_arm.outcome) == (data["segment"] != "Womens E-Mail").sum()  # other arm left out
    chosen = load_campaign(data, "segment", "Mens E-Mail", "No E-Mail", "visit", ["recency", "zip_code"])
    assert list(chosen.X.columns) == ["recency", "zip_code_Rural", "zip_code_Surburban", "zip_code_Urban"]


def test_load_reads_the_real_files_csv_format(tmp_path, hillstrom):
    """The MineThatData file as published: a header row, history segments with a comma quoted
    (`"6) $750 - $1,000"`), whole numbers without decimals (spend `0`), and Windows line ends. It
    must load exactly as the same rows do from a DataFrame, for every outcome."""
    import csv

    data = hillstrom[0]
    assert {"6) $750 - $1,000", "7) $1,000 +"} <= set(data["history_segment"])
    path = tmp_path / "hillstrom.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")  # quotes only fields holding a comma
        writer.writerow(data.columns)
        for row in data.itertuples(index=False):
            writer.writerow([f"{v:g}" if isinstance(v, float) else v for v in row])
    text = path.read_bytes().decode()
    assert ',"6) $750 - $1,000",' in text and ",2) $100 - $200," in text and text.endswith(",0\r\n")
    for outcome in ("visit", "conversion", "spend"):
        args = ("segment", "Mens E-Mail", "No E-Mail", outcome)
        from_csv, from_frame = load_campaign(path, *args), load_campaign(data, *args)
        pd.testing.assert_frame_equal(from_csv.X, from_frame.X)
        np.testing.assert_array_equal(from_csv.outcome, from_frame.outcome)
        np.testing.assert_array_equal(from_csv.treatment, from_frame.treatment)
        assert from_csv.dropped == from_frame.dropped == tuple(c for c in OUTCOMES if c != outcome)
    assert "history_segment_6) $750 - $1,000" in from_csv.X.columns


OUTCOMES = ("visit", "conversion", "spend")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(treatment_col="nope"), "not in the data"),
        (dict(treatment_value="Kids E-Mail"), "no rows with"),
        (dict(control_value="Mens E-Mail"), "both treatment and control"),
    ],
)
def test_load_errors(hillstrom, kwargs, message):
    args = dict(
        treatment_col="segment", treatment_value="Mens E-Mail", control_value="No E-Mail", outcome_col="visit"
    )
    with pytest.raises(ValueError, match=message):
        load_campaign(hillstrom[0], **{**args, **kwargs})


def test_split_is_sklearn_stratified_split(hillstrom):
    campaign = load_campaign(hillstrom[0], "segment", "Mens E-Mail,Womens E-Mail", "No E-Mail", "visit")
    train, test = split_campaign(campaign, 0.5, 42)
    strata = np.column_stack([campaign.treatment, campaign.outcome.astype(int)])
    _, expected = train_test_split(np.arange(len(strata)), test_size=0.5, random_state=42, stratify=strata)
    np.testing.assert_array_equal(test.outcome, campaign.outcome[expected])
    np.testing.assert_array_equal(test.treatment, campaign.treatment[expected])
    assert abs(train.outcome.mean() - test.outcome.mean()) < 0.002
    assert parse_split("0.5:42") == (0.5, 42)
    with pytest.raises(ValueError, match="0.5:42"):
        parse_split("half")


def test_cli_prints_one_json_line_per_model(tmp_path, hillstrom):
    path = tmp_path / "campaign.csv"
    hillstrom[0].to_csv(path, index=False)
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "uplift", "--data", str(path), "--treatment-col", "segment",
            "--treatment-value", "Mens E-Mail,Womens E-Mail", "--control-value", "No E-Mail",
            "--outcome-col", "visit", "--split", "0.5:42", "--models", "s,t,x,ct", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["model"] for r in rows] == [
        "s", "t", "x", "ct",
        "sklift-s", "sklift-t", "sklift-ct", "sklift-s-reg", "sklift-t-reg", "sklift-ct-reg",
    ]  # fmt: skip
    for row in rows:
        for key in ("qini_auc", "auuc", "uplift@30", "uplift@10", "uplift@30_by_group"):
            assert np.isfinite(row[key])
        assert -1 <= row["qini_auc"] <= 1
    ours, baselines = rows[:4], {r["model"]: r for r in rows[4:]}
    assert all(r["baseline"] for r in baselines.values())
    for row in ours:
        for metric in ("qini_auc", "uplift@30"):
            gap = row["vs_baselines"][metric]
            best = max(baselines.values(), key=lambda r: r[metric])
            assert gap["best_baseline"] == best["model"]
            assert gap["gap"] == pytest.approx(row[metric] - best[metric])
            # our S and T learners against their scikit-uplift twins on the same regularised
            # LightGBM: the same predictions, no gap to resample
            twin = gap["best_baseline"] == f"sklift-{row['model']}-reg" and row["model"] in ("s", "t")
            assert gap["gap_se"] == 0 if twin else gap["gap_se"] > 0, (row["model"], metric, gap)
    # our S-learner on the regularised LightGBM is scikit-uplift's SoloModel on the same learner
    assert rows[0]["qini_auc"] == pytest.approx(baselines["sklift-s-reg"]["qini_auc"], abs=1e-9)


def test_ids_and_timestamps_as_text_are_left_out_not_one_hot_encoded(tmp_path):
    """X5 RetailHero / Lenta style: a hex client id and an issue timestamp per row, `test`/`control`
    arms, empty cells. One-hot encoding every text column made a column per client (3697 columns from
    3000 rows; a 200k-client file asks for hundreds of GB): such columns are left out and named."""
    rng = np.random.default_rng(0)
    n = 600
    issued = [f"2017-{1 + x % 12:02d}-{1 + x % 28:02d} 1{x % 10}:{x % 60:02d}:07" for x in range(n)]
    data = pd.DataFrame({
        "client_id": [f"{x:010x}" for x in rng.integers(0, 2**40, n)],
        "treatment_flg": rng.choice(["test", "control"], n),
        "first_issue_date": issued,
        "age": np.where(rng.random(n) < 0.1, np.nan, rng.integers(18, 80, n)),
        "gender": rng.choice(["F", "M", "U"], n),
        "target": rng.integers(0, 2, n),
    })  # fmt: skip
    path = tmp_path / "uplift_train.csv"
    data.to_csv(path, index=False)
    campaign = load_campaign(path, "treatment_flg", "test", "control", "target")
    assert list(campaign.X.columns) == ["age", "gender_F", "gender_M", "gender_U"]
    assert campaign.too_many_levels == ("client_id", "first_issue_date")
    result = CliRunner().invoke(app, [
        "evaluate", "uplift", "--data", str(path), "--treatment-col", "treatment_flg",
        "--treatment-value", "test", "--control-value", "control", "--outcome-col", "target",
        "--models", "s", "--no-baselines", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "left out as text with over 100 distinct values (ids, times): client_id, first_issue_date" in (
        result.output
    )
    chosen = load_campaign(path, "treatment_flg", "test", "control", "target", ["gender", "client_id"])
    assert chosen.X.shape[1] == 3 + data["client_id"].nunique()  # named columns are used as given


@pytest.mark.parametrize(
    ("responders", "message"),
    [
        ({}, "error: the outcome is 0 in every row: there is nothing to model"),
        ({"No E-Mail": 1}, "error: the control arm has 1 row with a nonzero outcome: too few to split"
         " (a stratified split needs 2 rows of each arm and outcome)"),
    ],
)  # fmt: skip
def test_a_campaign_without_responses_is_refused_in_one_line(tmp_path, hillstrom, responders, message):
    """No visit at all made the Qini normalisation raise with a traceback; a single responder in an arm
    got scikit-learn's "least populated classes ... ['0 1']". An arm without responders still runs."""
    data = hillstrom[0].assign(visit=0)
    for segment, n in responders.items():
        data.loc[data.index[data["segment"] == segment][:n], "visit"] = 1
    path = tmp_path / "campaign.csv"
    data.to_csv(path, index=False)
    args = [
        "evaluate", "uplift", "--data", str(path), "--treatment-col", "segment",
        "--treatment-value", "Mens E-Mail", "--control-value", "No E-Mail", "--outcome-col", "visit",
        "--models", "s", "--no-baselines", "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == message, result.output
    data.loc[data.index[data["segment"] == "Mens E-Mail"][:40], "visit"] = 1
    data.assign(visit=data["visit"] * (data["segment"] != "No E-Mail")).to_csv(path, index=False)
    assert CliRunner().invoke(app, args).exit_code == 0  # no control responder: uplift is the treated rate


def test_arm_numbers_written_as_floats_match_and_a_miss_names_what_is_there(tmp_path):
    """A Criteo-style 0/1 treatment column saved by pandas with one empty cell reads `1.0`, `0.0`:
    `--treatment-value 1 --control-value 0` found no rows (`no rows with treatment == '1'`). Numbers
    match as numbers; the empty row is left out; a value that is not there lists those that are."""
    rng = np.random.default_rng(0)
    n = 400
    data = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(3)})
    data["treatment"] = rng.integers(0, 2, n).astype(float)
    data.loc[7, "treatment"] = np.nan
    data["visit"] = rng.integers(0, 2, n)
    path = tmp_path / "criteo-uplift.csv"
    data.to_csv(path, index=False)
    assert "1.0," in path.read_text()
    campaign = load_campaign(path, "treatment", "1", "0", "visit")
    assert len(campaign.outcome) == n - 1 and campaign.treatment.sum() == (data["treatment"] == 1).sum()
    with pytest.raises(ValueError, match=r"no rows with treatment == 'yes' \(it holds '', '0', '1'\)"):
        load_campaign(path, "treatment", "yes", "0", "visit")


def test_cli_rejects_unknown_model_and_bad_column(tmp_path, hillstrom):
    path = tmp_path / "campaign.csv"
    hillstrom[0].to_csv(path, index=False)
    base = ["evaluate", "uplift", "--data", str(path), "--treatment-col", "segment",
            "--treatment-value", "Mens E-Mail", "--control-value", "No E-Mail"]  # fmt: skip
    bad_model = CliRunner().invoke(app, [*base, "--outcome-col", "visit", "--models", "zz", "--json"])
    assert bad_model.exit_code == 2 and "unknown models" in bad_model.output
    bad_col = CliRunner().invoke(app, [*base, "--outcome-col", "clicks", "--json"])
    assert bad_col.exit_code == 2 and "clicks" in bad_col.output


@pytest.mark.slow
def test_regularised_models_beat_default_lightgbm_s_learner_on_hillstrom_like_data():
    """The reference (scikit-uplift's S-learner with LightGBM defaults) against our best model."""
    from lightgbm import LGBMClassifier

    from models.uplift import SLearner
    from training.evaluate_uplift import evaluate_models, score

    data, _ = hillstrom_like(n=64_000, seed=3)
    campaign = load_campaign(data, "segment", "Mens E-Mail,Womens E-Mail", "No E-Mail", "visit")
    train, test = split_campaign(campaign, 0.5, 42)
    reference = SLearner(LGBMClassifier(verbose=-1, n_jobs=1)).fit(train.X, train.treatment, train.outcome)
    ref = score(test.outcome, reference.predict_uplift(test.X), test.treatment)
    best = max(evaluate_models(train, test, ["s", "s-lr", "x"]), key=lambda r: r["qini_auc"])
    assert best["qini_auc"] > ref["qini_auc"]
    assert best["uplift@30"] > ref["uplift@30"]


def test_load_finds_the_gate_a_rare_outcome_is_reached_through(hillstrom):
    data, _ = hillstrom
    args = ("segment", "Mens E-Mail", "No E-Mail")
    conversion = load_campaign(data, *args, "conversion")
    assert conversion.gate_col == "visit"
    np.testing.assert_array_equal(conversion.gate, load_campaign(data, *args, "visit").outcome)
    assert load_campaign(data, *args, "spend").gate_col == "visit"  # of visit and conversion, the likelier
    assert load_campaign(data, *args, "visit").gate is None  # nothing comes before a visit
    # a chosen feature is no gate; without the visit column there is none
    assert load_campaign(data, *args, "conversion", ["recency", "visit"]).gate is None
    assert load_campaign(data.drop(columns="visit"), *args, "conversion").gate is None
    # the split keeps each row's gate with its outcome
    for half in split_campaign(conversion, 0.5, 42):
        assert half.gate_col == "visit" and len(half.gate) == len(half.outcome)
        assert ((half.outcome != 0) <= (half.gate == 1)).all()
        assert half.gate.sum() > 3 * half.outcome.sum()


@pytest.mark.parametrize(("missing", "found"), [(0.005, True), (0.05, False)])
def test_a_gate_may_miss_a_few_of_the_outcomes_events(missing, found):
    """A purchase logged without its visit (a tracking gap) keeps visit the gate when it is rare, and
    that row counts as gated; when many purchases lack a visit, visit is no funnel step."""
    data, _ = hillstrom_like(n=64_000, seed=0)
    in_pair = data["segment"].isin(["Mens E-Mail", "No E-Mail"]).to_numpy()
    buyers = np.flatnonzero((data["conversion"].to_numpy() == 1) & in_pair)
    lost = buyers[: max(1, int(missing * len(buyers)))]
    data.loc[lost, "visit"] = 0
    campaign = load_campaign(data, "segment", "Mens E-Mail", "No E-Mail", "conversion")
    assert (campaign.gate_col == "visit") is found
    if found:
        assert np.all(campaign.gate[campaign.outcome != 0] == 1)


@pytest.mark.parametrize("key", ["funnel", "funnel-2p", "funnel-blend"])
def test_a_gated_model_without_a_gate_is_refused_by_name(hillstrom, key):
    """`funnel-blend` needs a gate as `funnel` does (`selection.takes_gate`, the one rule): without one
    (nothing comes before a visit) evaluation says so by name, before fitting anything."""
    from training.evaluate_uplift import evaluate_models

    data, _ = hillstrom
    visit = load_campaign(data, "segment", "Mens E-Mail", "No E-Mail", "visit")
    train, test = split_campaign(visit, 0.5, seed=0)
    with pytest.raises(ValueError, match=f"{key} needs a gate"):
        evaluate_models(train, test, [key])
