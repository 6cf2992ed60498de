"""Offline evaluation of uplift models on any randomised campaign file (one row per contacted unit).

Protocol: keep the rows of the chosen treatment value(s) and the control value(s); several treatment
values are pooled into one treatment (e.g. both e-mail versions of the Hillstrom file against no
e-mail); string columns are one-hot encoded (but ids and times, `MAX_TEXT_LEVELS`, are left out); a
stratified (treatment x outcome) train/test split as `sklearn.model_selection.train_test_split` draws
it; every model is fit on train and scored on test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.uplift_metrics import plot_uplift_report, qini_auc_score, uplift_at_k, uplift_auc_score
from features.loaders import read_table
from models.uplift.base import is_binary_outcome
from models.uplift.selection import GATED_KEYS, gate_params, make_model

__all__ = [
    "CampaignData",
    "MAX_TEXT_LEVELS",
    "load_campaign",
    "split_campaign",
    "evaluate_models",
    "parse_split",
    "sklift_baselines",
    "lightgbm_defaults",
    "compare_to_baselines",
    "find_gate",
    "gate_of",
]


@dataclass(frozen=True)
class CampaignData:
    X: pd.DataFrame  # numeric features
    treatment: np.ndarray  # 1 treated, 0 control
    outcome: np.ndarray
    dropped: tuple[str, ...] = ()  # columns left out as post-treatment outcomes
    gate: np.ndarray | None = None  # the 0/1 step the outcome is reached through (`find_gate`)
    gate_col: str | None = None
    too_many_levels: tuple[str, ...] = ()  # text columns left out: ids, times (`MAX_TEXT_LEVELS`)


#: A text feature with more distinct values than this is an id or a time, not a category: one-hot
#: encoding it would add a column per row (X5's client ids: 200k rows x 200k columns).
MAX_TEXT_LEVELS = 100


def _values(spec: str | list[str]) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise ValueError("a treatment or control value list is empty")
    return items


def load_campaign(
    data: pd.DataFrame | Path | str,
    treatment_col: str,
    treatment_value: str | list[str],
    control_value: str | list[str],
    outcome_col: str,
    feature_cols: list[str] | None = None,
) -> CampaignData:
    """Select treated/control rows, encode features; values are compared as text (`1` matches 1, `1.0`
    and `True`, `_arm_labels`).

    A path is read by `features.loaders.read_table` (compressed, BOM, Windows-1252, delimiter found,
    decimal commas in a `;` file)."""
    df = read_table(data) if isinstance(data, (str, Path)) else data
    for col in [treatment_col, outcome_col, *(feature_cols or [])]:
        if col not in df.columns:
            raise ValueError(f"column {col!r} not in the data (columns: {', '.join(map(str, df.columns))})")
    treated_values, control_values = _values(treatment_value), _values(control_value)
    treated_values = _arm_labels(pd.Series(treated_values)).tolist()
    control_values = _arm_labels(pd.Series(control_values)).tolist()
    overlap = set(treated_values) & set(control_values)
    if overlap:
        raise ValueError(f"values {sorted(overlap)} are both treatment and control")
    labels = _arm_labels(df[treatment_col])
    for value in treated_values + control_values:
        if not (labels == value).any():
            held = sorted(labels.unique())
            shown = ", ".join(map(repr, held[:6])) + (
                f", ... ({len(held) - 6} more)" if len(held) > 6 else ""
            )
            raise ValueError(f"no rows with {treatment_col} == {value!r} (it holds {shown})")
    keep = labels.isin(treated_values + control_values)
    df = df.loc[keep].reset_index(drop=True)
    treatment = labels[keep].isin(treated_values).to_numpy().astype(int)
    outcome = pd.to_numeric(df[outcome_col], errors="coerce")
    if outcome.isna().any():
        first = int(np.argmax(outcome.isna().to_numpy()))
        value = df[outcome_col].iloc[first]
        raise ValueError(
            f"outcome column {outcome_col!r} has {int(outcome.isna().sum())} missing/non-numeric rows"
            f" (first: data row {int(np.flatnonzero(keep)[first]) + 1},"
            f" {'empty' if pd.isna(value) else repr(str(value))})"
        )
    features = feature_cols or [c for c in df.columns if c not in (treatment_col, outcome_col)]
    dropped = (
        ()
        if feature_cols
        else tuple(
            c for c in features if _looks_like_outcome(df[c], outcome) or _imbalanced(df[c], treatment)
        )
    )
    features = [c for c in features if c not in dropped]
    too_many_levels = () if feature_cols else tuple(c for c in features if _too_many_levels(df[c]))
    features = [c for c in features if c not in too_many_levels]
    if not features:
        raise ValueError("no feature columns left")
    X = pd.get_dummies(df[features], dtype=float, dummy_na=False)
    if X.isna().any().any():
        X = X.fillna(X.median(numeric_only=True))
    others = [c for c in df.columns if c not in (treatment_col, outcome_col, *features)]
    gate_col = find_gate(df[others], outcome)
    return CampaignData(
        X=X,
        treatment=treatment,
        outcome=outcome.to_numpy(dtype=float),
        dropped=dropped,
        gate=None if gate_col is None else gate_of(df[gate_col], outcome),
        gate_col=gate_col,
        too_many_levels=too_many_levels,
    )


def _too_many_levels(column: pd.Series) -> bool:
    """A text column (one-hot encoded as a feature) with more than `MAX_TEXT_LEVELS` distinct values."""
    text = not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))
    return text and column.nunique() > MAX_TEXT_LEVELS


def _arm_labels(column: pd.Series) -> pd.Series:
    """Arm values as stripped text, missing as '', booleans (`True`, `true`: pandas and Spark write
    them so) as 1 and 0, and whole numbers without a decimal part: a 0/1 column with an empty cell
    reads as `1.0`, `0.0`, and `--treatment-value 1` must match it."""
    text = column.astype(str).str.strip().where(column.notna(), "")
    text = text.str.lower().map({"true": "1", "false": "0"}).fillna(text)
    number = pd.to_numeric(text, errors="coerce")
    whole = (number == number.round()) & (number.abs() < 2**53)
    return text.where(~whole, number[whole].astype("int64").astype(str))


def find_gate(columns: pd.DataFrame, outcome: pd.Series) -> str | None:
    """The funnel step a rare outcome is reached through, when the file has one: of the columns that
    are not features (by default the outcome-like ones `_looks_like_outcome` left out), a 0/1 column
    that is 1 wherever the outcome is nonzero (all but `GATE_MISSES` of its events) and more often
    than that (Hillstrom's `visit` for `conversion`); of several, the most frequent (the most events
    to borrow). `funnel` (and `auto`, which weighs it) learn the outcome as P(gate) x the outcome
    given the gate; None when no column is one.
    """
    positive = (outcome != 0).to_numpy()
    found = {}
    for name in columns.columns:
        values = pd.to_numeric(columns[name], errors="coerce")
        if values.isna().any() or not values.isin([0, 1]).all():
            continue
        gate = values.to_numpy() == 1
        if (
            (positive & ~gate).sum() > GATE_MISSES * positive.sum()
            or not (gate & ~positive).any()
            or gate.all()
        ):
            continue
        found[name] = gate.sum()
    return max(found, key=found.get) if found else None


#: Share of the outcome's events a gate may lack (a purchase logged without its visit: a tracking
#: gap, a phone order). Such rows count as gated (`gate_of`), so the funnel's product stays exact.
GATE_MISSES = 0.01


def gate_of(column: pd.Series, outcome: pd.Series) -> np.ndarray:
    """The gate `funnel` is fitted with: the column, and every row where the outcome happened."""
    return ((pd.to_numeric(column) == 1) | (outcome != 0)).to_numpy(dtype=float)


def _looks_like_outcome(column: pd.Series, outcome: pd.Series) -> bool:
    """A numeric column nested with the outcome: nonzero only where the outcome is (spend when the
    outcome is conversion), or nonzero wherever the outcome is (visit when it is conversion).

    Such columns are measured after treatment and would leak the answer; without --feature-cols they
    are left out (and reported), since a campaign file usually carries several outcome columns. Columns
    imbalanced between the arms (see `_imbalanced`) are left out for the same reason.
    """
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        column = pd.to_numeric(column, errors="coerce") if not pd.api.types.is_bool_dtype(column) else column
    if column.isna().any():
        return False
    nonzero, positive = column != 0, outcome != 0
    if nonzero.all() or not nonzero.any() or not positive.any():
        return False
    return bool(not (nonzero & ~positive).any() or not (positive & ~nonzero).any())


def _imbalanced(column: pd.Series, treatment: np.ndarray, z_max: float = 5.0) -> bool:
    """A numeric column whose treated and control means differ by more than `z_max` standard errors.

    Assignment was random, so a column measured before it is balanced up to chance (|z| > 5 has
    probability below 1e-6); a gap that large means the column was measured after treatment.
    """
    if not pd.api.types.is_numeric_dtype(column):  # bool is numeric: True/False is a 0/1 column
        return False
    values = column.to_numpy(dtype=float)
    a, b = values[treatment == 1], values[treatment == 0]
    se = np.sqrt(np.nanvar(a, ddof=1) / len(a) + np.nanvar(b, ddof=1) / len(b))
    return bool(se > 0 and abs(np.nanmean(a) - np.nanmean(b)) / se > z_max)


def parse_split(spec: str) -> tuple[float, int]:
    """`"0.5:42"` -> (test share 0.5, seed 42)."""
    try:
        share, seed = spec.split(":")
        share_f, seed_i = float(share), int(seed)
    except ValueError as exc:
        raise ValueError(f"--split must look like 0.5:42 (test share:seed), got {spec!r}") from exc
    if not 0 < share_f < 1:
        raise ValueError(f"test share must be in (0, 1), got {share_f}")
    return share_f, seed_i


def split_campaign(
    data: CampaignData, test_size: float = 0.5, seed: int = 42
) -> tuple[CampaignData, CampaignData]:
    """Stratified by treatment x outcome (x outcome > 0 for continuous outcomes), as train_test_split does.

    Refused in one line: an outcome equal in every row (no response to model; the Qini curve is then
    undefined), and an arm with a single row of an outcome class (too few to stratify). An arm without
    any responder is fine."""
    from sklearn.model_selection import train_test_split

    if len(np.unique(data.outcome)) < 2:
        raise ValueError(f"the outcome is {data.outcome[0]:g} in every row: there is nothing to model")
    y_strata = data.outcome if is_binary_outcome(data.outcome) else (data.outcome > 0).astype(float)
    strata = np.column_stack([data.treatment, y_strata.astype(int)])
    for arm, name in ((1, "treated"), (0, "control")):
        for responded, what in ((1, "a nonzero"), (0, "a zero")):
            n = int(((strata[:, 0] == arm) & (strata[:, 1] == responded)).sum())
            if n == 1:
                raise ValueError(
                    f"the {name} arm has 1 row with {what} outcome: too few to split (a stratified split"
                    " needs 2 rows of each arm and outcome)"
                )
    idx_train, idx_test = train_test_split(
        np.arange(len(data.outcome)), test_size=test_size, random_state=seed, stratify=strata
    )

    def take(idx):
        return CampaignData(
            data.X.iloc[idx].reset_index(drop=True),
            data.treatment[idx],
            data.outcome[idx],
            data.dropped,
            None if data.gate is None else data.gate[idx],
            data.gate_col,
            data.too_many_levels,
        )

    return take(idx_train), take(idx_test)


def score(outcome, uplift, treatment) -> dict[str, float]:
    """The reported metrics for one model's test-set predictions."""
    return {
        "qini_auc": qini_auc_score(outcome, uplift, treatment),
        "auuc": uplift_auc_score(outcome, uplift, treatment),
        "uplift@30": uplift_at_k(outcome, uplift, treatment, 0.3, "overall"),
        "uplift@10": uplift_at_k(outcome, uplift, treatment, 0.1, "overall"),
        "uplift@30_by_group": uplift_at_k(outcome, uplift, treatment, 0.3, "by_group"),
    }


BASELINE_LEARNERS = ("lgbm", "reg")  # LightGBM defaults (scikit-uplift's usual setup); ours regularised


def lightgbm_defaults(binary: bool, random_state: int = 0):
    """LightGBM with its default parameters (one thread, quiet): the base learner scikit-uplift's
    examples use, so its baselines here are what a marketer would otherwise run."""
    from lightgbm import LGBMClassifier, LGBMRegressor

    cls = LGBMClassifier if binary else LGBMRegressor
    return cls(n_jobs=1, verbose=-1, random_state=random_state)


def sklift_baselines(
    train: CampaignData, test: CampaignData, random_state: int = 0
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """scikit-uplift's own S-learner (SoloModel), T-learner (TwoModels) and class transformation,
    each on LightGBM defaults (`sklift-s`, ...) and on our regularised LightGBM (`sklift-s-reg`, ...),
    fit on train and scored on test like our models. Class transformation is for binary outcomes
    only in scikit-uplift, so a continuous outcome has no `sklift-ct` rows. Returns the score rows
    and each baseline's test-set uplift.
    """
    from sklift.models import ClassTransformation, SoloModel, TwoModels

    from models.uplift.base import default_estimator

    binary = is_binary_outcome(train.outcome)

    def base(learner: str):
        if learner == "reg":
            return default_estimator(binary, random_state)
        return lightgbm_defaults(binary, random_state)

    rows, predictions = [], {}
    for learner in BASELINE_LEARNERS:
        suffix = "" if learner == "lgbm" else "-reg"
        models = {
            f"sklift-s{suffix}": SoloModel(base(learner)),
            f"sklift-t{suffix}": TwoModels(base(learner), base(learner), method="vanilla"),
        }
        if binary:
            models[f"sklift-ct{suffix}"] = ClassTransformation(base(learner))
        # arrays, not frames: LightGBM refuses one-hot column names such as "1) $0 - $100"
        X_train, X_test = train.X.to_numpy(dtype=float), test.X.to_numpy(dtype=float)
        for key, model in models.items():
            model.fit(X_train, train.outcome, train.treatment)
            uplift = np.asarray(model.predict(X_test), dtype=float)
            predictions[key] = uplift
            rows.append({"model": key, "baseline": True, **score(test.outcome, uplift, test.treatment)})
    return rows, predictions


def compare_to_baselines(
    test: CampaignData, uplift: np.ndarray, baselines: dict[str, np.ndarray], n_boot: int = 200, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per metric (Qini AUC, uplift@30): the model's test score minus the best baseline's, and the
    paired bootstrap standard error of that gap (test rows resampled, every model on the same rows),
    so a gap can be read against the test set's own noise."""
    y, t = test.outcome, test.treatment
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(n_boot)]
    out = {}
    for metric, fn in (
        ("qini_auc", lambda yy, uu, tt: qini_auc_score(yy, uu, tt)),
        ("uplift@30", lambda yy, uu, tt: uplift_at_k(yy, uu, tt, 0.3, "overall")),
    ):
        base_scores = {k: fn(y, u, t) for k, u in baselines.items()}
        best = max(base_scores, key=base_scores.get)
        gap = fn(y, uplift, t) - base_scores[best]
        boot = [
            fn(y[i], uplift[i], t[i]) - fn(y[i], baselines[best][i], t[i])
            for i in draws
            if 0 < t[i].sum() < len(i)
        ]
        out[metric] = {"best_baseline": best, "gap": float(gap), "gap_se": float(np.std(boot, ddof=1))}
    return out


def evaluate_models(
    train: CampaignData,
    test: CampaignData,
    models: list[str],
    random_state: int = 0,
    plots_dir: Path | None = None,
    baselines: bool = False,
) -> list[dict]:
    """Fit each named model on train, score on test; `auto` also reports the model it chose.

    With `baselines`, scikit-uplift's S, T and class-transformation models (`sklift_baselines`) are
    scored too, and each of our models' rows gets `vs_baselines`: its gap to the best of them per
    metric, with the gap's bootstrap standard error. With `plots_dir`, each model's Qini, uplift and
    calibration PNGs are written there.
    """
    binary = is_binary_outcome(train.outcome)
    rows, predictions = [], {}
    for key in models:
        model = make_model(key, binary=binary, random_state=random_state)
        if key in GATED_KEYS and train.gate is None:
            raise ValueError(f"{key} needs a gate: a 0/1 column (a visit) wherever the outcome is nonzero")
        model.fit(train.X, train.treatment, train.outcome, **gate_params(key, train.gate))
        uplift = np.asarray(model.predict_uplift(test.X), dtype=float)
        predictions[key] = uplift
        row = {"model": key, **score(test.outcome, uplift, test.treatment)}
        if plots_dir is not None:
            plot_uplift_report(test.outcome, uplift, test.treatment, plots_dir, prefix=key.replace("-", "_"))
        if key.startswith("auto"):
            row["chosen"] = model.best_key_
            row["cv"] = model.cv_scores_
            row["rule"] = model.rule_
            row["choice_by_rule"] = model.choice_by_rule_
            row["nested"] = model.nested_scores_
            row["nested_skipped"] = model.nested_skipped_
            row["gate"] = train.gate_col
        rows.append(row)
    if baselines:
        base_rows, base_preds = sklift_baselines(train, test, random_state)
        for row in rows:
            row["vs_baselines"] = compare_to_baselines(
                test, predictions[row["model"]], base_preds, seed=random_state
            )
        rows.extend(base_rows)
    return rows
