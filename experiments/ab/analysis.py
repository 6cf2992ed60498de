"""Analysis of an online experiment from its exposure/outcome event log.

The event log (schema in docs/experiments.md) has one row per event: `experiment`, `variant`,
`unit_id`, `event_type` (`exposure`, `click`, `purchase`, others ignored), `value` (CNY paid on a
purchase), `ts`, and optionally `pre_value` (a pre-period covariate per unit, used by CUPED).
A unit enters the analysis at its first exposure; only its events from then on count, because events
before the variant was shown cannot have been caused by it.

Statistics: Welch's t test for per-unit means (scipy), the delta method for the ratio metric (CTR) and
for relative lift, CUPED with theta = cov(x, y) / var(x) (for the ratio metric on its delta-method
linearisation per unit, Deng et al. 2013), Holm or Benjamini-Hochberg across metrics
(statsmodels), a chi-squared sample-ratio-mismatch check and a fixed horizon: before the planned
sample size every metric reads "not yet conclusive".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from experiments.ab.catalogue import load_catalogue

REQUIRED_COLUMNS = ("experiment", "variant", "unit_id", "event_type", "value", "ts")
COVARIATE = "pre_value"
SRM_ALPHA = 0.001

# name -> (kind, per-unit numerator column, per-unit denominator column or None): the metric catalogue
CATALOGUE = load_catalogue()
METRICS: dict[str, tuple[str, str, str | None]] = {n: m.definition for n, m in CATALOGUE.items()}
DEFAULT_METRICS = ("conversion", "ctr", "revenue_per_shopper", "orders_per_shopper")
CORRECTIONS = {"holm": "holm", "bh": "fdr_bh"}
GUARDRAIL_HARM = ("decrease", "increase")


@dataclass
class UnitTable:
    """One row per analysed unit plus the bookkeeping of what was left out and why."""

    units: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)


def unit_table(events: pd.DataFrame, experiment: str) -> UnitTable:
    """Per-unit exposures, clicks, purchases, revenue (from first exposure on) for one experiment."""
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"event log lacks columns {missing}; required: {list(REQUIRED_COLUMNS)}")
    ev = events.loc[events["experiment"] == experiment]
    if ev.empty:
        known = sorted(map(str, events["experiment"].dropna().unique()))[:20]
        raise ValueError(f"no events for experiment {experiment!r}; experiments in the file: {known}")
    if ev[["variant", "unit_id", "event_type", "ts"]].isna().any().any():
        raise ValueError("variant, unit_id, event_type and ts must not be null")
    ev = ev.assign(
        unit_id=ev["unit_id"].astype(str),
        variant=ev["variant"].astype(str),
        ts=pd.to_datetime(ev["ts"], utc=True),
        value=pd.to_numeric(ev["value"], errors="raise").fillna(0.0),
    )
    dropped: dict[str, int] = {}

    exposures = ev.loc[ev["event_type"] == "exposure"]
    if exposures.empty:
        raise ValueError(f"experiment {experiment!r} has no exposure events")
    n_variants = exposures.groupby("unit_id")["variant"].nunique()
    conflicted = n_variants.index[n_variants > 1]
    dropped["units_in_several_variants"] = int(len(conflicted))
    if len(conflicted):
        ev = ev.loc[~ev["unit_id"].isin(conflicted)]
        exposures = exposures.loc[~exposures["unit_id"].isin(conflicted)]
    first = exposures.groupby("unit_id").agg(variant=("variant", "first"), first_ts=("ts", "min"))

    outcomes = ev.loc[ev["event_type"] != "exposure"].join(first["first_ts"], on="unit_id")
    dropped["events_of_unexposed_units"] = int(outcomes["first_ts"].isna().sum())
    before = outcomes["ts"] < outcomes["first_ts"]
    dropped["events_before_exposure"] = int(before.sum())
    outcomes = outcomes.loc[outcomes["first_ts"].notna() & ~before]

    units = first[["variant"]].copy()
    units["exposures"] = exposures.groupby("unit_id").size()
    clicks = outcomes.loc[outcomes["event_type"] == "click"].groupby("unit_id").size()
    purchases = outcomes.loc[outcomes["event_type"] == "purchase"]
    units["clicks"] = clicks.reindex(units.index, fill_value=0)
    units["purchases"] = purchases.groupby("unit_id").size().reindex(units.index, fill_value=0)
    units["revenue"] = purchases.groupby("unit_id")["value"].sum().reindex(units.index, fill_value=0.0)
    units["converted"] = (units["purchases"] > 0).astype(float)
    if COVARIATE in ev.columns:
        # Shoppers with no pre-period activity have covariate 0 (new shoppers), not a missing value.
        pre = pd.to_numeric(ev[COVARIATE], errors="raise").groupby(ev["unit_id"]).max()
        units[COVARIATE] = pre.reindex(units.index).fillna(0.0)
    return UnitTable(units=units, dropped=dropped)


def srm_check(counts: Mapping[str, int], expected_shares: Mapping[str, float]) -> dict:
    """Chi-squared test of observed unit counts against the configured traffic shares."""
    unknown = set(counts) - set(expected_shares)
    if unknown:
        raise ValueError(f"variants {sorted(unknown)} observed but not in the expected weights")
    names = list(expected_shares)
    observed = np.array([counts.get(v, 0) for v in names], dtype=float)
    shares = np.array([expected_shares[v] for v in names], dtype=float)
    expected = shares / shares.sum() * observed.sum()
    chi2, p = stats.chisquare(observed, expected)
    return {
        "chi2": float(chi2),
        "p_value": float(p),
        "flagged": bool(p < SRM_ALPHA),
        "observed": dict(zip(names, observed.astype(int).tolist(), strict=True)),
        "expected": dict(zip(names, expected.round(2).tolist(), strict=True)),
    }


def cuped_theta(y: np.ndarray, x: np.ndarray) -> float:
    """theta = cov(x, y) / var(x); 0 when the covariate is constant (nothing to adjust with)."""
    var = np.var(x, ddof=1)
    return float(np.cov(x, y, ddof=1)[0, 1] / var) if var > 0 else 0.0


def _relative_ci(mt: float, mc: float, var_t: float, var_c: float, z: float) -> tuple[float, float, float]:
    """Relative lift mt/mc - 1 and its delta-method CI, from the variances of the two estimates."""
    if mc == 0:
        return float("nan"), float("nan"), float("nan")
    rel = mt / mc - 1
    se = np.sqrt(var_t / mc**2 + mt**2 * var_c / mc**4)
    return float(rel), float(rel - z * se), float(rel + z * se)


def _var_of_mean(y: np.ndarray) -> float:
    """Variance of the mean of independent unit values."""
    return float(np.var(y, ddof=1) / len(y))


def _cuped_adjust(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y - theta (x - mean x) with theta pooled over both variants (Deng et al. 2013)."""
    return y - cuped_theta(y, x) * (x - x.mean())


def _variance_reduction(var_adjusted: float, var_plain: float) -> float:
    """Share of the lift estimate's variance CUPED removed (rho^2 of metric and covariate, asymptotically)."""
    return float(1 - var_adjusted / var_plain) if var_plain > 0 else 0.0


def compare_means(y_t: np.ndarray, y_c: np.ndarray, alpha: float = 0.05) -> dict:
    """Welch's t test on per-unit values: absolute lift, its CI and p-value; relative lift by delta method."""
    if len(y_t) < 2 or len(y_c) < 2:
        raise ValueError("each variant needs at least two units")
    res = stats.ttest_ind(y_t, y_c, equal_var=False)
    mt, mc = float(np.mean(y_t)), float(np.mean(y_c))
    if np.isnan(res.pvalue):  # both groups constant: no evidence either way
        lo = hi = mt - mc
        p = 1.0
    else:
        ci = res.confidence_interval(1 - alpha)
        lo, hi, p = float(ci.low), float(ci.high), float(res.pvalue)
    z = stats.norm.ppf(1 - alpha / 2)
    rel, rlo, rhi = _relative_ci(mt, mc, _var_of_mean(y_t), _var_of_mean(y_c), z)
    return {
        "control_value": mc,
        "treatment_value": mt,
        "abs_lift": mt - mc,
        "abs_ci": [lo, hi],
        "rel_lift": rel,
        "rel_ci": [rlo, rhi],
        "p_value": p,
    }


def linearised_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Per-unit delta-method linearisation of R = sum(num) / sum(den): R + (num - R den) / mean(den).

    Its mean is R and its variance / n is the delta-method variance of R, so a ratio metric can be
    treated as a per-unit mean (which is how CUPED extends to ratios, Deng et al. 2013).
    """
    mx = den.mean()
    if mx == 0:
        raise ValueError("ratio metric has a zero denominator in a variant")
    r = num.sum() / den.sum()
    return r + (num - r * den) / mx


def compare_ratios(num_t, den_t, num_c, den_c, alpha: float = 0.05, covariate=None) -> dict:
    """Two ratio metrics (e.g. CTR = clicks / exposures) compared with delta-method z tests.

    With `covariate` (a pair of per-unit pre-period arrays, treatment then control) the linearised
    unit values get the CUPED adjustment of a mean metric; the row then carries `variance_reduction`.
    """
    if len(num_t) < 2 or len(num_c) < 2:
        raise ValueError("each variant needs at least two units")
    lin_t = linearised_ratio(np.asarray(num_t, float), np.asarray(den_t, float))
    lin_c = linearised_ratio(np.asarray(num_c, float), np.asarray(den_c, float))
    extra = {}
    if covariate is not None:
        x_t, x_c = (np.asarray(x, float) for x in covariate)
        if (len(x_t), len(x_c)) != (len(lin_t), len(lin_c)):
            raise ValueError("the covariate needs one value per unit of each variant")
        plain_var = _var_of_mean(lin_t) + _var_of_mean(lin_c)
        adjusted = _cuped_adjust(np.concatenate([lin_t, lin_c]), np.concatenate([x_t, x_c]))
        lin_t, lin_c = adjusted[: len(lin_t)], adjusted[len(lin_t) :]
        extra["variance_reduction"] = _variance_reduction(
            _var_of_mean(lin_t) + _var_of_mean(lin_c), plain_var
        )
    rt, vt = float(lin_t.mean()), _var_of_mean(lin_t)
    rc, vc = float(lin_c.mean()), _var_of_mean(lin_c)
    z = stats.norm.ppf(1 - alpha / 2)
    se = np.sqrt(vt + vc)
    diff = rt - rc
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else 1.0
    rel, rlo, rhi = _relative_ci(rt, rc, vt, vc, z)
    return {
        "control_value": rc,
        "treatment_value": rt,
        "abs_lift": diff,
        "abs_ci": [float(diff - z * se), float(diff + z * se)],
        "rel_lift": rel,
        "rel_ci": [rlo, rhi],
        "p_value": p,
        **extra,
    }


def analyze(events: pd.DataFrame, experiment: str, **options) -> dict:
    """The full report for one experiment's event log as a JSON-ready dict (options: `analyze_units`)."""
    table = unit_table(events, experiment)
    return {"experiment": experiment, **analyze_units(table.units, **options), "dropped": table.dropped}


def analyze_units(
    units: pd.DataFrame,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    guardrails: Mapping[str, str] | None = None,
    expected_shares: Mapping[str, float] | None = None,
    control: str | None = None,
    planned_units: int | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    cuped: bool = True,
) -> dict:
    """The report from a per-unit table (the `unit_table` columns).

    `metrics` are the decision metrics (corrected together per treatment); `guardrails` maps further
    metrics to the harmful direction (`decrease` or `increase`): a guardrail is breached when its CI
    lies entirely on the harmful side, beyond the relative change the metric catalogue tolerates.
    `expected_shares` defaults to equal traffic. `planned_units` is the fixed horizon per variant (from
    the power calculator).
    """
    guardrails = dict(guardrails or {})
    for name in [*metrics, *guardrails]:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    for name, harm in guardrails.items():
        if harm not in GUARDRAIL_HARM:
            raise ValueError(f"guardrail {name!r}: harmful direction must be one of {GUARDRAIL_HARM}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {correction!r}")
    if not metrics:
        raise ValueError("give at least one decision metric")

    counts = units["variant"].value_counts().to_dict()
    if expected_shares is None:
        names = sorted(counts)
        expected_shares = {v: 1 / len(names) for v in names}
    if len(expected_shares) < 2:
        raise ValueError("an experiment needs at least two variants")
    if control is None:
        control = "control" if "control" in expected_shares else next(iter(expected_shares))
    if control not in expected_shares:
        raise ValueError(f"control variant {control!r} is not among {list(expected_shares)}")
    missing = [v for v in expected_shares if counts.get(v, 0) < 2]
    if missing:
        raise ValueError(f"variants {missing} have fewer than two exposed units")
    srm = srm_check(counts, expected_shares)
    min_units = min(counts.get(v, 0) for v in expected_shares)
    if srm["flagged"]:
        status = "invalid: sample ratio mismatch"
    elif planned_units is not None and min_units < planned_units:
        status = "not yet conclusive"
    else:
        status = "conclusive"

    use_cuped = cuped and COVARIATE in units.columns
    comparisons = []
    for treatment in (v for v in expected_shares if v != control):
        pair = units.loc[units["variant"].isin([control, treatment])]
        is_t = (pair["variant"] == treatment).to_numpy()
        rows = []
        for name in [*metrics, *guardrails]:
            kind, num, den = METRICS[name]
            x = pair[COVARIATE].to_numpy(float) if use_cuped else None
            reduction = None
            if kind == "ratio":
                n_, d_ = pair[num].to_numpy(float), pair[den].to_numpy(float)
                covariate = (x[is_t], x[~is_t]) if use_cuped else None
                row = compare_ratios(n_[is_t], d_[is_t], n_[~is_t], d_[~is_t], alpha, covariate)
                reduction = row.pop("variance_reduction", None)
            else:
                y = pair[num].to_numpy(float)
                if use_cuped:
                    plain_var = _var_of_mean(y[is_t]) + _var_of_mean(y[~is_t])
                    y = _cuped_adjust(y, x)
                    adjusted_var = _var_of_mean(y[is_t]) + _var_of_mean(y[~is_t])
                    reduction = _variance_reduction(adjusted_var, plain_var)
                row = compare_means(y[is_t], y[~is_t], alpha)
            rows.append(
                {
                    "treatment": treatment,
                    "metric": name,
                    "kind": kind,
                    "cuped": use_cuped,
                    "variance_reduction": reduction,
                    "guardrail": name in guardrails,
                    **row,
                }
            )
        decision_rows = [r for r in rows if not r["guardrail"]]
        raw_p = [r["p_value"] for r in decision_rows]
        if len(raw_p) == 1:  # nothing to correct (and statsmodels' Holm runs a full gc.collect())
            reject, p_adj = [raw_p[0] < alpha], raw_p
        else:
            reject, p_adj, _, _ = multipletests(raw_p, alpha=alpha, method=CORRECTIONS[correction])
        for r, rej, pa in zip(decision_rows, reject, p_adj, strict=True):
            r["p_adjusted"] = float(pa)
            r["significant"] = bool(rej)
            r["verdict"] = _verdict(status, bool(rej), r["abs_lift"])
        for r in rows:
            if r["guardrail"]:
                lo, hi = r["abs_ci"]
                harmed = hi < 0 if guardrails[r["metric"]] == "decrease" else lo > 0
                guard = CATALOGUE[r["metric"]].guardrail
                tolerance = (
                    guard.max_relative_change if guard and guard.harm == guardrails[r["metric"]] else 0.0
                )
                if tolerance:  # harm only beyond the catalogue's tolerated relative change
                    rlo, rhi = r["rel_ci"]
                    harmed = rhi < -tolerance if guardrails[r["metric"]] == "decrease" else rlo > tolerance
                r["guardrail_tolerance"] = tolerance
                r["p_adjusted"] = r["p_value"]
                r["significant"] = bool(r["p_value"] < alpha)
                r["verdict"] = "guardrail breached" if harmed else "guardrail ok"
        comparisons.extend(rows)

    return {
        "control": control,
        "status": status,
        "alpha": alpha,
        "correction": correction,
        "planned_units_per_variant": planned_units,
        "variants": {
            v: {"units": int(counts.get(v, 0)), "expected_share": float(s)}
            for v, s in expected_shares.items()
        },
        "srm": srm,
        "comparisons": comparisons,
    }


def _verdict(status: str, significant: bool, lift: float) -> str:
    if status != "conclusive":
        return status
    if not significant:
        return "no significant difference"
    return "significant increase" if lift > 0 else "significant decrease"
