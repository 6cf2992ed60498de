"""Offline evaluation of uplift models on any randomised campaign file (one row per contacted unit).

Protocol: keep the rows of the chosen treatment value(s) and the control value(s); several treatment
values are pooled into one treatment (e.g. both e-mail versions of the Hillstrom file against no
e-mail); string columns are one-hot encoded; a stratified (treatment x outcome) train/test split as
`sklearn.model_selection.train_test_split` draws it; every model is fit on train and scored on test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.uplift_metrics import plot_uplift_report, qini_auc_score, uplift_at_k, uplift_auc_score
from models.uplift.base import is_binary_outcome
from models.uplift.selection import make_model

__all__ = ["CampaignData", "load_campaign", "split_campaign", "evaluate_models", "parse_split"]


@dataclass(frozen=True)
class CampaignData:
    X: pd.DataFrame  # numeric features
    treatment: np.ndarray  # 1 treated, 0 control
    outcome: np.ndarray
    dropped: tuple[str, ...] = ()  # columns left out as post-treatment outcomes


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
    """Select treated/control rows, encode features; values are compared as strings (`1` matches 1)."""
    df = pd.read_csv(data) if isinstance(data, (str, Path)) else data
    for col in [treatment_col, outcome_col, *(feature_cols or [])]:
        if col not in df.columns:
            raise ValueError(f"column {col!r} not in the data (columns: {', '.join(map(str, df.columns))})")
    treated_values, control_values = _values(treatment_value), _values(control_value)
    overlap = set(treated_values) & set(control_values)
    if overlap:
        raise ValueError(f"values {sorted(overlap)} are both treatment and control")
    labels = df[treatment_col].astype(str).str.strip()
    for value in treated_values + control_values:
        if not (labels == value).any():
            raise ValueError(f"no rows with {treatment_col} == {value!r}")
    keep = labels.isin(treated_values + control_values)
    df = df.loc[keep].reset_index(drop=True)
    treatment = labels[keep].isin(treated_values).to_numpy().astype(int)
    outcome = pd.to_numeric(df[outcome_col], errors="coerce")
    if outcome.isna().any():
        raise ValueError(
            f"outcome column {outcome_col!r} has {int(outcome.isna().sum())} missing/non-numeric rows"
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
    if not features:
        raise ValueError("no feature columns left")
    X = pd.get_dummies(df[features], dtype=float, dummy_na=False)
    if X.isna().any().any():
        X = X.fillna(X.median(numeric_only=True))
    return CampaignData(X=X, treatment=treatment, outcome=outcome.to_numpy(dtype=float), dropped=dropped)


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
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
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
    """Stratified by treatment x outcome (x outcome > 0 for continuous outcomes), as train_test_split does."""
    from sklearn.model_selection import train_test_split

    y_strata = data.outcome if is_binary_outcome(data.outcome) else (data.outcome > 0).astype(float)
    strata = np.column_stack([data.treatment, y_strata.astype(int)])
    idx_train, idx_test = train_test_split(
        np.arange(len(data.outcome)), test_size=test_size, random_state=seed, stratify=strata
    )

    def take(idx):
        return CampaignData(
            data.X.iloc[idx].reset_index(drop=True), data.treatment[idx], data.outcome[idx], data.dropped
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


def evaluate_models(
    train: CampaignData,
    test: CampaignData,
    models: list[str],
    random_state: int = 0,
    plots_dir: Path | None = None,
) -> list[dict]:
    """Fit each named model on train, score on test; `auto` also reports the model it chose.

    With `plots_dir`, each model's Qini, uplift and calibration PNGs are written there.
    """
    binary = is_binary_outcome(train.outcome)
    rows = []
    for key in models:
        model = make_model(key, binary=binary, random_state=random_state)
        model.fit(train.X, train.treatment, train.outcome)
        uplift = model.predict_uplift(test.X)
        row = {"model": key, **score(test.outcome, uplift, test.treatment)}
        if plots_dir is not None:
            plot_uplift_report(test.outcome, uplift, test.treatment, plots_dir, prefix=key.replace("-", "_"))
        if key == "auto":
            row["chosen"] = model.best_key_
            row["cv_qini"] = model.cv_scores_
        rows.append(row)
    return rows
