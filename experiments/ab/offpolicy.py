"""Off-policy evaluation of a candidate ranker from logged pages with per-slot propensities.

Logging (the exploration slice in serving): with probability 1 - epsilon a page is the logging model's
top list, otherwise a uniformly random ordered draw from the eligible pool of size m. The propensity
of item a at slot r is therefore (1 - epsilon) [a is the model's r-th item] + epsilon / m, known
exactly and logged with every shown item (`explore_propensities`).

Estimators (item-position model: a click at slot r depends on the item there and on r only), for a
deterministic candidate that would show e_r(x) at slot r, weight w_r = [a_r = e_r(x)] / p0(a_r, r):
- IPS  = mean over pages of sum_r w_r y_r / k;
- SNIPS = mean over slots of sum_i w_ir y_ir / sum_i w_ir (delta-method interval);
- DR = mean over pages of sum_r (q(x, e_r, r) + w_r (y_r - q(x, a_r, r))) / k, with a direct reward
  model q (`RankRewardModel`), and DM = the direct model alone (biased, for reference).
y is a click or a purchase, so the estimates are the candidate's click and purchase rate per shown
slot. Intervals are normal on the per-page terms; the effective sample size per slot,
(sum w)^2 / sum w^2, says how much the weights cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

ESTIMATORS = ("ips", "snips", "dr", "dm")


def explore_propensities(
    logging_top: np.ndarray, shown: np.ndarray, epsilon: float, pool_size: np.ndarray | int
) -> np.ndarray:
    """p0 of each shown item at its slot under epsilon mixing with a uniform random page."""
    if not 0 < epsilon <= 1:
        raise ValueError("epsilon must be in (0, 1]")
    pool = np.asarray(pool_size, float)
    if (pool < shown.shape[-1]).any():
        raise ValueError("the pool must hold at least one page of items")
    same = np.asarray(logging_top) == np.asarray(shown)
    pool = pool[..., None] if pool.ndim else pool
    return (1 - epsilon) * same + epsilon / pool


def sample_explore_pages(
    logging_top: np.ndarray, pool_size: int, epsilon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pages (rows of item indices, the pool being 0..pool_size-1), their propensities and which rows
    were explored.

    Explored rows are a uniformly random ordered k-subset of range(pool_size) (Gumbel top-k on equal
    scores); the rest show `logging_top`.
    """
    n, k = logging_top.shape
    explore = rng.random(n) < epsilon
    shown = logging_top.copy()
    if explore.any():
        shown[explore] = np.argsort(rng.random((int(explore.sum()), pool_size)), axis=1)[:, :k]
    return shown, explore_propensities(logging_top, shown, epsilon, pool_size), explore


@dataclass(frozen=True)
class RankRewardModel:
    """Direct reward model q = theta_r x rate[candidate's rank of the item], fitted on the logs.

    theta_r (examination by slot, relative to slot 0) comes from the explored pages, where items land
    on slots at random; rate[j] is the reward per examined impression of items the candidate ranks j-th
    for that shopper (j = depth: not in its top `depth`), shrunk toward the overall rate by `prior`
    pseudo-impressions. Keyed by the candidate's own ranking, the model is personal without features.
    """

    theta: np.ndarray
    rate: np.ndarray  # per candidate rank 0..depth (depth = outside the candidate's list)

    @classmethod
    def fit(cls, rank, reward, explored, depth: int, prior: float = 20.0) -> RankRewardModel:
        rank, reward, explored = np.asarray(rank), np.asarray(reward, float), np.asarray(explored, bool)
        rows = explored if explored.sum() >= 10 else np.ones(len(rank), bool)
        by_slot = reward[rows].mean(axis=0)
        theta = by_slot / by_slot[0] if by_slot[0] > 0 else np.ones(rank.shape[1])
        exposure = np.bincount(rank.ravel(), np.broadcast_to(theta, rank.shape).ravel(), depth + 1)
        hits = np.bincount(rank.ravel(), reward.ravel(), depth + 1)
        overall = hits.sum() / max(exposure.sum(), 1e-12)
        return cls(theta, (hits + prior * overall) / (exposure + prior))

    def predict(self, rank: np.ndarray) -> np.ndarray:
        return self.rate[rank] * self.theta[: rank.shape[-1]]


def candidate_rank(shown: np.ndarray, candidate_list: np.ndarray) -> np.ndarray:
    """Rank of each shown item in the candidate's list for that page (len(list) when absent)."""
    shown, candidate_list = np.asarray(shown), np.asarray(candidate_list)
    depth = candidate_list.shape[1]
    match = shown[:, :, None] == candidate_list[:, None, :]
    return np.where(match.any(axis=2), match.argmax(axis=2), depth)


def _normal(terms: np.ndarray, alpha: float) -> tuple[float, list[float]]:
    est = float(terms.mean())
    half = float(stats.norm.isf(alpha / 2) * terms.std(ddof=1) / np.sqrt(len(terms)))
    return est, [est - half, est + half]


def estimate(
    shown: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    target: np.ndarray,
    *,
    q_shown: np.ndarray | None = None,
    q_target: np.ndarray | None = None,
    alpha: float = 0.05,
    clip: float | None = None,
) -> dict:
    """IPS, SNIPS and (given reward-model predictions) DR and DM of the candidate's reward per slot.

    All arrays are (pages, slots): the shown item, its logged propensity, its reward, the item the
    candidate would show there, and q for the shown and for the candidate's item.
    """
    shown, propensity, reward, target = (np.asarray(x) for x in (shown, propensity, reward, target))
    if not shown.shape == propensity.shape == reward.shape == target.shape:
        raise ValueError("shown, propensity, reward and target must have one shape (pages, slots)")
    if len(shown) < 2:
        raise ValueError("need at least two logged pages")
    if (propensity <= 0).any() or (propensity > 1).any():
        raise ValueError("propensities must lie in (0, 1]")
    k = shown.shape[1]
    w = (shown == target) / propensity
    if clip is not None:
        w = np.minimum(w, clip)
    out = {"pages": int(len(shown)), "slots": int(k)}
    out["ips"], out["ips_ci"] = _normal((w * reward).sum(axis=1) / k, alpha)
    sw = w.sum(axis=0)
    if (sw <= 0).any():
        out["snips"], out["snips_ci"] = float("nan"), [float("nan"), float("nan")]
    else:
        ratio = (w * reward).sum(axis=0) / sw
        lin = ((w * reward - ratio * w) / w.mean(axis=0)).sum(axis=1) / k
        est = float(ratio.mean())
        half = float(stats.norm.isf(alpha / 2) * lin.std(ddof=1) / np.sqrt(len(lin)))
        out["snips"], out["snips_ci"] = est, [est - half, est + half]
    if q_shown is not None and q_target is not None:
        q_shown, q_target = np.asarray(q_shown, float), np.asarray(q_target, float)
        out["dr"], out["dr_ci"] = _normal((q_target + w * (reward - q_shown)).sum(axis=1) / k, alpha)
        out["dm"] = float(q_target.mean())
    out["ess_per_slot"] = (sw**2 / np.maximum((w**2).sum(axis=0), 1e-300)).round(1).tolist()
    out["match_rate"] = float((shown == target).mean())
    return out


def evaluate(
    shown: np.ndarray,
    propensity: np.ndarray,
    explored: np.ndarray,
    rewards: dict[str, np.ndarray],
    candidate_list: np.ndarray,
    alpha: float = 0.05,
) -> dict[str, dict]:
    """`estimate` per reward (e.g. {"ctr": clicks, "purchase_rate": purchases}) of a candidate whose
    ranked list per page is `candidate_list` (pages, depth >= slots; its first slots are the target),
    with DR's reward model fitted on the same logs."""
    candidate_list = np.asarray(candidate_list)
    k = shown.shape[1]
    if candidate_list.shape[1] < k:
        raise ValueError("the candidate's lists must be at least one page long")
    rank = candidate_rank(shown, candidate_list)
    target_rank = np.broadcast_to(np.arange(k), shown.shape)
    out = {}
    for name, reward in rewards.items():
        model = RankRewardModel.fit(rank, reward, explored, candidate_list.shape[1])
        out[name] = estimate(
            shown,
            propensity,
            reward,
            candidate_list[:, :k],
            q_shown=model.predict(rank),
            q_target=model.predict(target_rank),
            alpha=alpha,
        )
    return out
