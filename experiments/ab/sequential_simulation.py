"""Peeking checked by simulation: many experiments, each looked at after every one of L equal batches.

Units come from a simulated marketplace scenario (`experiments.ab.simulation`), drawn for all runs at
once in chunks, and each run's units arrive in order, batch k closing look k. Per run and look the
cumulative count, sum and sum of squares per arm give the difference of means and its variance, and
every method decides on those same numbers (`sequential.decisions`), so the methods differ only in
their rule. An A/A run rejecting at any look is a false positive; with an effect, a rejection in the
right direction counts towards power.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from experiments.ab import sequential
from experiments.ab.power import check_levels
from experiments.ab.simulation import VARIANTS, Scenario

MEAN_METRICS = {
    "conversion": "converted",
    "orders_per_shopper": "purchases",
    "revenue_per_shopper": "revenue",
}
_CHUNK_UNITS = 1_000_000  # units drawn per chunk of runs (memory bound)


def with_effect(scenario: Scenario, effect: float) -> Scenario:
    """Treatment = control with click rate scaled by (1 + effect); 0 gives the A/A scenario."""
    if effect == 0:
        return scenario.aa()
    if not -1 < effect:
        raise ValueError("effect is a relative change of the click rate, above -1")
    arm = replace(scenario.control, ctr=scenario.control.ctr * (1 + effect))
    return replace(scenario, name=f"{scenario.name}{effect:+g}", treatment=arm)


def edges_of(units: int, looks: int) -> np.ndarray:
    """Units seen by the end of each of `looks` equal batches."""
    return np.linspace(0, units, looks + 1).round().astype(int)[1:]


def look_sums(scenario, runs: int, units: int, looks: int, metric: str, seed: int) -> tuple[np.ndarray, ...]:
    """Cumulative (n, sum, sum of squares) of each arm per run and look: six arrays (runs, looks)."""
    column = MEAN_METRICS[metric]
    edges = edges_of(units, looks)
    out = np.zeros((6, runs, looks))
    per_chunk = max(1, _CHUNK_UNITS // units)
    for first in range(0, runs, per_chunk):
        k = min(per_chunk, runs - first)
        table = scenario.units(k * units, seed=seed * 1_000_003 + first)
        y = table[column].to_numpy(float).reshape(k, units)
        is_t = (table["variant"].to_numpy() == VARIANTS[1]).reshape(k, units)
        for arm, mask in enumerate((is_t, ~is_t)):
            for j, values in enumerate((mask, y * mask, y * y * mask)):
                out[3 * arm + j, first : first + k] = np.cumsum(values, axis=1)[:, edges - 1]
    return tuple(out)


def simulate_peeking(
    scenario: Scenario,
    *,
    method: str,
    runs: int = 500,
    looks: int = 14,
    units: int = 14_000,
    effect: float = 0.0,
    metric: str = "conversion",
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Rejection rate of `method` over `runs` experiments of `units` shoppers with `looks` looks.

    Reports `false_positive_rate` (effect 0) or `power` (the share of runs that reject in the true
    direction), and for contrast the rate of the fixed-horizon test read only at the last look.
    """
    if method not in sequential.METHODS:
        raise ValueError(f"method must be one of {sequential.METHODS}, got {method!r}")
    if metric not in MEAN_METRICS:
        raise ValueError(f"metric must be one of {sorted(MEAN_METRICS)}")
    if runs < 1 or looks < 1 or units < 4 * looks:
        raise ValueError("need runs >= 1, looks >= 1 and at least 4 units per look")
    check_levels(alpha)
    scenario = with_effect(scenario, effect)
    truth = scenario.truth(VARIANTS[1])[metric] - scenario.truth(VARIANTS[0])[metric]
    n_t, s_t, q_t, n_c, s_c, q_c = look_sums(scenario, runs, units, looks, metric, seed)
    d, v = sequential.diff_of_means(n_t, s_t, q_t, n_c, s_c, q_c)
    n = n_t + n_c
    # The looks are planned (L equal batches), so mSPRT uses its calibrated threshold for them.
    planned_looks = edges_of(units, looks) / units if method == "msprt" else None
    result = sequential.decisions(
        method, d, v, n, planned_units=units, alpha=alpha, planned_looks=planned_looks
    )
    reject = result["reject"]
    first = np.where(reject.any(axis=1), reject.argmax(axis=1), -1)
    signed = reject[:, -1] & (np.sign(d[np.arange(runs), np.maximum(first, 0)]) == np.sign(truth))
    final_only = sequential.fixed_p_values(d[:, -1], v[:, -1]) < alpha
    out = {
        "scenario": scenario.name,
        "method": method,
        "metric": metric,
        "runs": runs,
        "looks": looks,
        "units_per_run": units,
        "alpha": alpha,
        "effect": effect,
        "true_lift": float(truth),
        "rejection_rate": float(reject[:, -1].mean()),
        "fixed_final_look_rejection_rate": float(final_only.mean()),
        "mean_stopping_look": float(np.where(first >= 0, first + 1, looks).mean()),
    }
    if method == "msprt":
        covered = (result["ci_low"] <= truth) & (truth <= result["ci_high"])
        out["confidence_sequence_coverage"] = float(covered.all(axis=1).mean())
        out["threshold_alpha"] = float(result["threshold_alpha"])
        # For contrast: the uncalibrated 1/alpha threshold (valid under any monitoring).
        anytime = sequential.decisions(method, d, v, n, planned_units=units, alpha=alpha)["reject"]
        anytime_signed = anytime[:, -1] & (
            np.sign(d[np.arange(runs), np.maximum(anytime.argmax(axis=1), 0)]) == np.sign(truth)
        )
        out["anytime_threshold_rejection_rate"] = float(
            anytime[:, -1].mean() if effect == 0 else anytime_signed.mean()
        )
    if method == "group-sequential":
        out["boundaries"] = result["bound"][0].round(4).tolist()
    if effect == 0:
        out["false_positive_rate"] = out["rejection_rate"]
    else:
        out["power"] = float(signed.mean())
    return out
