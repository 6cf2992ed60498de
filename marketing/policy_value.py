"""What a targeting plan would earn, estimated before launch from logged randomised assignments.

A plan is a policy pi: each logged row's shopper gets arm pi_i (a coupon, or the baseline arm =
no coupon). From rows where the arm was drawn at random with a logged probability p_i, the
incremental value of pi over giving everyone the baseline arm b is, per row,

    IPS:  1{a_i = pi_i} r_i / p_i  -  1{a_i = b} r_i / p_i
    DR:   q(pi_i) - q(b) + 1{a_i = pi_i} (r_i - q(a_i)) / p_i - 1{a_i = b} (r_i - q(a_i)) / p_i

(Dudik, Langford & Li 2011), where r_i is the logged reward and q an outcome model's predicted
reward. Rows whose plan arm is the baseline add 0 to both. The estimate of the plan's total is
`scale` (the number of shoppers the rows represent per row) times the mean over rows; its interval is
the normal one from the rows' standard error, since rows are independent draws.

`pooled_policy_value` uses every round of a campaign series, each logged by its own policy (a
planned audience with a random holdout, a uniform probe, everyone else no coupon): each shopper's
arm in round s had a known probability P_s(a | i), and the estimator weights by the average over
the rounds, Pbar(a | i) (the balance heuristic of Agarwal et al. 2017, "Effective evaluation using
logged bandit feedback from multiple loggers"): unbiased whenever Pbar > 0, and far less variable
than the probe alone where the plan repeats earlier plans (Pbar ~ 0.9 instead of the probe's
1 / (arms + 1) x probe share) and for the baseline (most shoppers get no coupon with probability ~1).
Rows of one shopper share that shopper's effects, so the interval clusters by shopper.

These intervals are for the plan's *expected* value. What one run of the plan realises also carries
that run's own outcome noise (who happens to buy, their baskets): `realized_interval` widens an
interval by the plan's outcome variance, which is what to compare with a realised profit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PolicyValue", "policy_value", "pooled_policy_value", "realized_interval"]


@dataclass(frozen=True)
class PolicyValue:
    """Estimates of a plan's total incremental value with their (1 - alpha) normal intervals."""

    n: int
    ips: float
    ips_low: float
    ips_high: float
    dr: float | None
    dr_low: float | None
    dr_high: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _interval(terms: np.ndarray, scale: float, z: float) -> tuple[float, float, float]:
    mean = float(terms.mean())
    se = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("inf")
    return scale * mean, scale * (mean - z * se), scale * (mean + z * se)


def policy_value(
    reward,
    logged_arm,
    propensity,
    target_arm,
    *,
    baseline="control",
    q_target=None,
    q_baseline=None,
    q_logged=None,
    scale: float = 1.0,
    z: float = 1.96,
) -> PolicyValue:
    """IPS (and, given the three `q_*` predictions per row, DR) value of `target_arm` over `baseline`.

    `propensity` is the logged probability of the arm each row actually got; `scale` turns the
    per-row mean into the plan's total (e.g. population size, when rows sample it uniformly)."""
    r = np.asarray(reward, dtype=float)
    a = np.asarray(logged_arm, dtype=object)
    p = np.asarray(propensity, dtype=float)
    pi = np.asarray(target_arm, dtype=object)
    if not (len(r) == len(a) == len(p) == len(pi)):
        raise ValueError(f"reward, logged_arm, propensity, target_arm differ in length: {len(r)}, {len(a)}, "
                         f"{len(p)}, {len(pi)}")  # fmt: skip
    if len(r) == 0:
        raise ValueError("no logged rows to estimate from")
    if not np.isfinite(r).all():
        raise ValueError("reward has missing or infinite values")
    if not ((p > 0) & (p <= 1)).all():
        raise ValueError("propensities must be in (0, 1]: every logged arm had a chance to be drawn")
    hit = (a == pi) & (pi != baseline)  # a row the plan treats and the log treated the same way
    base = (a == baseline) & (pi != baseline)  # a row the plan treats that the log left untreated
    ips_terms = (hit * r - base * r) / p
    ips = _interval(ips_terms, scale, z)
    qs = (q_target, q_baseline, q_logged)
    if all(q is None for q in qs):
        return PolicyValue(len(r), *ips, None, None, None)
    if any(q is None for q in qs):
        raise ValueError("the doubly robust estimate needs q_target, q_baseline and q_logged")
    qt, qb, ql = (np.asarray(q, dtype=float) for q in qs)
    if not (len(qt) == len(qb) == len(ql) == len(r)):
        raise ValueError("each q_* needs one prediction per logged row")
    treated = pi != baseline
    dr_terms = treated * (qt - qb) + (hit * (r - ql) - base * (r - ql)) / p
    return PolicyValue(len(r), *ips, *_interval(dr_terms, scale, z))


def pooled_policy_value(
    reward, logged_arm, propensity, target_arm, *, q=None, baseline: int = 0, z: float = 1.96, q_var=None
) -> PolicyValue:
    """IPS (and, given `q`, DR) total incremental value of `target_arm` over the baseline arm for a
    population logged over several rounds by different known policies.

    `reward`, `logged_arm`: (rounds, n) per round and shopper (arms are column indices);
    `propensity`: (rounds, n, arms) each round's logging probability of every arm for every shopper;
    `target_arm`: (n,) the plan's arm per shopper; `q`: (n, arms) an outcome model's expected reward.
    The estimate is the sum over shoppers of their mean term over rounds.

    `q_var`: (n, arms) the outcome model's reward variance. The DR interval's variance is then at
    least what the known propensities imply: a shopper's mean correction over S rounds has variance
    (1/S) x sum over the plan's and the baseline arm of var(reward) / Pbar(arm). Where Pbar is tiny
    (an arm only a small probe could give), the few large terms that carry the estimate are mostly
    absent from a sample, and the sample's spread understates its real one; the propensities do not."""
    r = np.asarray(reward, dtype=float)
    a = np.asarray(logged_arm, dtype=int)
    p = np.asarray(propensity, dtype=float)
    pi = np.asarray(target_arm, dtype=int)
    if r.ndim != 2 or a.shape != r.shape or p.shape[:2] != r.shape or pi.shape != r.shape[1:]:
        raise ValueError("reward, logged_arm: (rounds, n); propensity: (rounds, n, arms); target: (n,)")
    if r.shape[1] < 2:
        raise ValueError("need at least two shoppers to estimate from")
    if not np.isfinite(r).all():
        raise ValueError("reward has missing or infinite values")
    if not np.allclose(p.sum(axis=2), 1.0) or (p < 0).any():
        raise ValueError("each round's propensities of a shopper must be probabilities summing to 1")
    pbar = p.mean(axis=0)  # (n, arms)
    cols = np.arange(r.shape[1])
    if (pbar[cols, pi] <= 0).any() or (pbar[:, baseline] <= 0).any():
        raise ValueError("the plan gives an arm no logging policy could draw: no support")
    w = 1.0 / pbar[cols[None, :], a]  # (rounds, n)
    treated = pi != baseline
    hit = (a == pi[None, :]) & treated[None, :]
    base = (a == baseline) & treated[None, :]
    sign = hit.astype(float) - base.astype(float)
    ips = _clustered(sign * r * w, z)
    if q is None:
        return PolicyValue(r.size, *ips, None, None, None)
    q = np.asarray(q, dtype=float)
    if q.shape != pbar.shape:
        raise ValueError("q must be (n, arms)")
    direct = treated * (q[cols, pi] - q[:, baseline])
    floor = 0.0
    if q_var is not None:
        v = np.asarray(q_var, dtype=float)
        if v.shape != pbar.shape or (v < 0).any():
            raise ValueError("q_var must be (n, arms) and non-negative")
        floor = float((treated * (v[cols, pi] / pbar[cols, pi] + v[:, baseline] / pbar[:, baseline])).sum())
        floor /= r.shape[0]
    dr = _clustered(sign * (r - q[cols[None, :], a]) * w, z, fixed=float(direct.sum()), min_var=floor)
    return PolicyValue(r.size, *ips, *dr)


def _clustered(
    terms: np.ndarray, z: float, fixed: float = 0.0, min_var: float = 0.0
) -> tuple[float, float, float]:
    """`fixed` plus the total over shoppers (columns) of their mean term over rounds (rows), with its
    normal interval (variance at least `min_var`). Every shopper is in the sum (not a sample), so only
    the terms vary: the model's direct part (`fixed`) is the same whatever was drawn."""
    per_shopper = terms.mean(axis=0)
    n = len(per_shopper)
    total = fixed + float(per_shopper.sum())
    se = float(np.sqrt(max(n * per_shopper.var(ddof=1), min_var)))
    return total, total - z * se, total + z * se


def realized_interval(
    estimate: float, low: float, high: float, outcome_variance: float, z: float = 1.96
) -> tuple[float, float]:
    """Interval for the profit a plan will realise in one run, from a normal (`low`, `high`) interval
    for its expectation: the realised profit also carries the run's own outcome noise (the sum of
    the plan's per-shopper reward variances, `outcome_variance`), independent of the logged rows."""
    if outcome_variance < 0 or z <= 0:
        raise ValueError("outcome_variance must be >= 0 and z > 0")
    se = (high - low) / (2 * z)
    half = z * float(np.sqrt(se**2 + outcome_variance))
    return estimate - half, estimate + half
