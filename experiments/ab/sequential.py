"""Peeking-safe inference: mSPRT (always-valid p-values, confidence sequences) and group-sequential
boundaries from an O'Brien-Fleming-like alpha-spending function, plus the naive fixed-horizon test
for contrast.

Every function works on a difference estimate `d` and its variance `v` per look (the last axis is
the look), so one call evaluates thousands of simulated experiments at once.

- mSPRT with a N(0, tau^2) mixture (Johari et al. 2017): Lambda_n = sqrt(v/(v + tau^2))
  exp(tau^2 d^2 / (2 v (v + tau^2))); p_n = min(1, min_{t<=n} 1/Lambda_t); confidence sequence
  d +/- sqrt(v (v + tau^2)/tau^2 (log((v + tau^2)/v) - 2 log alpha)). tau^2 is tuned, as GrowthBook
  does, to be tightest at the planned sample: tau^2 = sigma^2 rho^2 with
  rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / N*, sigma^2 / N* estimated as v n / N*.
  Rejecting when Lambda >= 1/alpha is valid under any monitoring (Ville's inequality) but, over a
  finite horizon read at a few planned looks, spends far less than alpha (about 1% at 14 daily looks).
  With a planned look schedule the threshold 1/alpha' is calibrated (a truncated mSPRT): alpha' is
  chosen so that the probability under H0 of Lambda crossing it at one of the planned looks is exactly
  alpha, computed by the same numerical integration as the group-sequential boundaries (at look k,
  Lambda >= 1/alpha' is |Z_k| >= a z boundary that depends only on the information fraction). Any
  other monitoring still has Ville's bound alpha'.
- Group sequential (Lan-DeMets): cumulative alpha(t) = 2 - 2 Phi(z_{alpha/2} / sqrt(t)) at
  information fraction t; the z boundary of each look spends exactly alpha(t_k) - alpha(t_{k-1}),
  computed by numerical integration of the continuation density of the score process (Armitage,
  McPherson and Rowe 1969).
- Fixed: the usual two-sided z test; valid only at the single planned look.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

METHODS = ("msprt", "group-sequential", "fixed")
_GRID = 801  # odd: Simpson weights on the continuation region


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def msprt_rho2(planned_units: float, alpha: float = 0.05) -> float:
    """Mixture variance per unit of variance (rho^2) that makes the boundary tightest at `planned_units`."""
    _check_alpha(alpha)
    if not planned_units > 0:
        raise ValueError("planned_units must be positive")
    k = -2 * np.log(alpha)
    return float((k + np.log(1 + k)) / planned_units)


def msprt(
    d: np.ndarray, v: np.ndarray, tau2: np.ndarray | float, alpha: float = 0.05
) -> dict[str, np.ndarray]:
    """Always-valid p-values and confidence sequences over looks (last axis), from d, v and tau^2."""
    _check_alpha(alpha)
    d, v = np.asarray(d, float), np.asarray(v, float)
    tau2 = np.broadcast_to(np.asarray(tau2, float), d.shape)
    if (v <= 0).any() or (tau2 <= 0).any():
        raise ValueError("variances and tau^2 must be positive")
    log_lambda = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2 * v * (v + tau2))
    p = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lambda)), axis=-1)
    half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * np.log(alpha)))
    return {"log_lambda": log_lambda, "p_value": p, "ci_low": d - half, "ci_high": d + half}


def msprt_z_bounds(fractions: np.ndarray, log_threshold: float, alpha: float = 0.05) -> np.ndarray:
    """|Z| at which Lambda reaches exp(log_threshold) at each information fraction, with tau^2 tuned by
    `msprt_rho2` for the horizon (tau^2 / v = rho^2 n = (-2 log alpha + log(1 - 2 log alpha)) t)."""
    k = -2 * np.log(alpha)
    r = (k + np.log(1 + k)) * np.asarray(fractions, float)
    return np.sqrt(2 * (1 + r) / r * (log_threshold + 0.5 * np.log1p(r)))


def crossing_probability(fractions: Sequence[float], bounds: Sequence[float]) -> float:
    """P(|Z_k| >= c_k at some look k) under H0 for two-sided z boundaries at the information fractions."""
    t, c = np.asarray(fractions, float), np.asarray(bounds, float)
    if t.ndim != 1 or len(t) == 0 or (np.diff(t) <= 0).any() or t[0] <= 0:
        raise ValueError("information fractions must be a positive, increasing sequence")
    crossed = 2 * stats.norm.sf(c[0])
    b = c[0] * np.sqrt(t[0])
    grid = np.linspace(-b, b, _GRID)
    dens = stats.norm.pdf(grid, scale=np.sqrt(t[0])) * _simpson(_GRID) * (grid[1] - grid[0])
    for k in range(1, len(t)):
        sd = np.sqrt(t[k] - t[k - 1])
        b = c[k] * np.sqrt(t[k])
        crossed += float(dens @ (stats.norm.sf((b - grid) / sd) + stats.norm.cdf((-b - grid) / sd)))
        new = np.linspace(-b, b, _GRID)
        kernel = stats.norm.pdf((new[:, None] - grid[None, :]) / sd) / sd
        dens = (kernel @ dens) * _simpson(_GRID) * (new[1] - new[0])
        grid = new
    return crossed


def msprt_planned_alpha(fractions: Sequence[float], alpha: float = 0.05) -> float:
    """alpha' of the truncated mSPRT: rejecting at Lambda >= 1/alpha' at these planned looks has type I
    error exactly alpha (alpha' >= alpha; 1/alpha' is the calibrated threshold)."""
    _check_alpha(alpha)
    return _planned_alpha(tuple(np.round(np.asarray(fractions, float), 9)), alpha)


@functools.lru_cache(maxsize=64)
def _planned_alpha(fractions: tuple[float, ...], alpha: float) -> float:
    t = np.asarray(fractions)

    def excess(log_threshold: float) -> float:
        return crossing_probability(t, msprt_z_bounds(t, log_threshold, alpha)) - alpha

    log_threshold = optimize.brentq(excess, 1e-6, -np.log(alpha), xtol=1e-8)
    return float(np.exp(-log_threshold))


def obf_spending(t: np.ndarray | float, alpha: float = 0.05) -> np.ndarray:
    """Cumulative alpha spent at information fraction t (Lan-DeMets O'Brien-Fleming-like)."""
    _check_alpha(alpha)
    t = np.asarray(t, float)
    if ((t <= 0) | (t > 1)).any():
        raise ValueError("information fractions must lie in (0, 1]")
    return 2 - 2 * stats.norm.cdf(stats.norm.isf(alpha / 2) / np.sqrt(t))


def _simpson(n: int) -> np.ndarray:
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return w / 3


def group_sequential_bounds(fractions: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Two-sided z boundaries c_k for looks at increasing information fractions (the last usually 1).

    Look k rejects when |Z_k| >= c_k; the probability under H0 of first crossing at look k equals the
    spending increment alpha(t_k) - alpha(t_{k-1}).
    """
    t = np.asarray(fractions, float)
    if t.ndim != 1 or len(t) == 0 or (np.diff(t) <= 0).any():
        raise ValueError("information fractions must be a non-empty increasing sequence")
    spent = obf_spending(t, alpha)
    bounds = np.empty(len(t))
    bounds[0] = stats.norm.isf(spent[0] / 2)
    # Continuation density of the score S_k = Z_k sqrt(t_k) on a grid over (-c sqrt t, c sqrt t).
    grid = np.linspace(-bounds[0] * np.sqrt(t[0]), bounds[0] * np.sqrt(t[0]), _GRID)
    dens = stats.norm.pdf(grid, scale=np.sqrt(t[0])) * _simpson(_GRID) * (grid[1] - grid[0])
    for k in range(1, len(t)):
        sd = np.sqrt(t[k] - t[k - 1])
        target = spent[k] - spent[k - 1]

        def crossing(c: float, k=k, sd=sd, grid=grid, dens=dens) -> float:
            b = c * np.sqrt(t[k])
            return float(dens @ (stats.norm.sf((b - grid) / sd) + stats.norm.cdf((-b - grid) / sd)))

        if target <= crossing(40.0):  # nothing left to spend here (numerically)
            bounds[k] = 40.0
        else:
            bounds[k] = optimize.brentq(lambda c, target=target: crossing(c) - target, 1e-6, 40.0, xtol=1e-10)
        b = bounds[k] * np.sqrt(t[k])
        new = np.linspace(-b, b, _GRID)
        kernel = stats.norm.pdf((new[:, None] - grid[None, :]) / sd) / sd
        dens = (kernel @ dens) * _simpson(_GRID) * (new[1] - new[0])
        grid = new
    return bounds


def z_stats(d: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.asarray(d, float) / np.sqrt(np.asarray(v, float))


def fixed_p_values(d: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Fixed-horizon two-sided p-value at each look (valid only at the planned one)."""
    return 2 * stats.norm.sf(np.abs(z_stats(d, v)))


def decisions(
    method: str,
    d: np.ndarray,
    v: np.ndarray,
    n: np.ndarray,
    *,
    planned_units: float,
    alpha: float = 0.05,
    planned_looks: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Per look (last axis): the method's evidence and whether it rejects by that look.

    `n` is the units so far (both arms), `planned_units` the planned total. Group-sequential
    boundaries use the information fraction n / planned_units (capped at 1); `fixed` rejects at a look
    when that look's fixed-horizon p-value is below alpha (a naive peeker's rule). mSPRT with
    `planned_looks` (their information fractions) rejects at the calibrated threshold 1/alpha' of the
    truncated mSPRT; without, at 1/alpha, valid under any monitoring.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    d, v, n = (np.asarray(x, float) for x in (d, v, n))
    if method == "msprt":
        tau2 = v * n * msprt_rho2(planned_units, alpha)
        level = alpha if planned_looks is None else msprt_planned_alpha(planned_looks, alpha)
        out = msprt(d, v, tau2, level)  # confidence sequence at the calibrated level too
        out["reject"] = np.logical_or.accumulate(out["p_value"] <= level, axis=-1)
        out["threshold_alpha"] = np.float64(level)
        return out
    z = z_stats(d, v)
    if method == "fixed":
        p = fixed_p_values(d, v)
        return {"z": z, "p_value": p, "reject": np.logical_or.accumulate(p < alpha, axis=-1)}
    fractions = np.minimum(n / planned_units, 1.0)
    if fractions.ndim > 1:  # simulated runs share one look schedule
        if not np.allclose(fractions, fractions[(0,) * (fractions.ndim - 1)]):
            raise ValueError("group-sequential runs must share one look schedule")
        fractions = fractions[(0,) * (fractions.ndim - 1)]
    bounds = group_sequential_bounds(_increasing(fractions), alpha)
    return {
        "z": z,
        "bound": np.broadcast_to(bounds, z.shape),
        "reject": np.logical_or.accumulate(np.abs(z) >= bounds, axis=-1),
    }


def _increasing(fractions: np.ndarray) -> np.ndarray:
    """Looks at the same information (no new units, or past the horizon) cannot spend again."""
    if (np.diff(fractions) <= 0).any():
        raise ValueError(
            "group-sequential looks need strictly increasing information (more units at every look, "
            "and no look after the planned horizon)"
        )
    return fractions


def diff_of_means(n_t, s_t, q_t, n_c, s_c, q_c) -> tuple[np.ndarray, np.ndarray]:
    """Difference of arm means and its (unpooled) variance from counts, sums and sums of squares."""
    n_t, s_t, q_t, n_c, s_c, q_c = (np.asarray(x, float) for x in (n_t, s_t, q_t, n_c, s_c, q_c))
    if (np.minimum(n_t, n_c) < 2).any():
        raise ValueError("each arm needs at least two units at every look")
    m_t, m_c = s_t / n_t, s_c / n_c
    var_t = (q_t - n_t * m_t**2) / (n_t - 1)
    var_c = (q_c - n_c * m_c**2) / (n_c - 1)
    v = var_t / n_t + var_c / n_c
    # A look where both arms are constant so far (e.g. no conversion yet) carries no information;
    # a tiny floor keeps it a non-rejecting look instead of a division by zero.
    return m_t - m_c, np.maximum(v, 1e-12)
