"""Interleaving versus an A/B test of the same two recommenders, on a generated marketplace's tastes.

Each shopper sees a few pages of `slots` products, more if more active (`experiments.ab.pages`).
In the A/B test a shopper sees ranker A's or B's pages and the metric is clicks + purchase_weight x
purchases per shopper (Welch test); in the interleaving test every page is a fresh team draft, credit
adds up per shopper and the sign test of wins against losses decides. A large pilot estimates each
design's per-shopper moments, the usual normal-approximation formulas turn them into the shoppers
needed for the target power, and `runs` simulated tests at exactly those sizes measure the power and
whether both reach the same decision.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from experiments.ab import interleaving
from experiments.ab.pages import PageWorld


def _pages(world: PageWorld, shopper: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Every page of the test: (shopper row of the world, unit index in `shopper`) per page."""
    unit = np.repeat(np.arange(len(shopper)), world.pages_seen(shopper, rng))
    return shopper[unit], unit


def _ab_outcome(world: PageWorld, model: str, shopper: np.ndarray, weight: float, rng) -> np.ndarray:
    page_shopper, unit = _pages(world, shopper, rng)
    clicks, purchases = world.react(page_shopper, world.rankings[model][page_shopper, : world.slots], rng)
    return np.bincount(unit, (clicks + weight * purchases).sum(axis=1), minlength=len(shopper))


def _interleaved(world: PageWorld, a: str, b: str, shopper: np.ndarray, weight: float, rng):
    """Per-shopper credit of A and B over all of the shopper's team-draft pages."""
    page_shopper, unit = _pages(world, shopper, rng)
    items, team = interleaving.team_draft_batch(
        world.rankings[a][page_shopper], world.rankings[b][page_shopper], world.slots, rng
    )
    clicks, purchases = world.react(page_shopper, items, rng)
    ca, cb = interleaving.credit(team, clicks, purchases, weight)
    return np.bincount(unit, ca, minlength=len(shopper)), np.bincount(unit, cb, minlength=len(shopper))


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(stats.norm.isf(alpha / 2)), float(stats.norm.ppf(power))


def compare(
    world: PageWorld,
    a: str,
    b: str,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    purchase_weight: float = 1.0,
    runs: int = 200,
    pilot: int = 200_000,
    seed: int = 0,
) -> dict:
    """Shoppers each design needs for `power`, checked by `runs` simulated tests at those sizes."""
    rng = np.random.default_rng(seed)
    za, zb = _z(alpha, power)
    n_shoppers = len(world.shopper_ids)

    # A/B: per-arm moments from the pilot.
    ya = _ab_outcome(world, a, rng.integers(0, n_shoppers, pilot), purchase_weight, rng)
    yb = _ab_outcome(world, b, rng.integers(0, n_shoppers, pilot), purchase_weight, rng)
    ab_diff = ya.mean() - yb.mean()
    per_arm = math.ceil((za + zb) ** 2 * (ya.var() + yb.var()) / ab_diff**2)
    # Interleaving: share of decisive shoppers and A's win rate among them (sign test).
    ca, cb = _interleaved(world, a, b, rng.integers(0, n_shoppers, pilot), purchase_weight, rng)
    decisive = (ca != cb).mean()
    q = float((ca > cb).sum() / max((ca != cb).sum(), 1))
    n_decisive = ((za * 0.5 + zb * math.sqrt(q * (1 - q))) / (q - 0.5)) ** 2
    il_shoppers = math.ceil(n_decisive / decisive)

    truth = "A" if world.true_rates(a)["ctr"] > world.true_rates(b)["ctr"] else "B"
    ab_calls, il_calls = [], []
    for _ in range(runs):
        ya = _ab_outcome(world, a, rng.integers(0, n_shoppers, per_arm), purchase_weight, rng)
        yb = _ab_outcome(world, b, rng.integers(0, n_shoppers, per_arm), purchase_weight, rng)
        p = stats.ttest_ind(ya, yb, equal_var=False).pvalue
        ab_calls.append(("A" if ya.mean() > yb.mean() else "B") if p < alpha else None)
        ca, cb = _interleaved(world, a, b, rng.integers(0, n_shoppers, il_shoppers), purchase_weight, rng)
        il_calls.append(interleaving.preference(ca, cb, alpha)["winner"])
    ab_calls, il_calls = np.array(ab_calls, dtype=object), np.array(il_calls, dtype=object)
    return {
        "a": a,
        "b": b,
        "true_rates": {a: world.true_rates(a), b: world.true_rates(b)},
        "truth_winner": truth,
        "alpha": alpha,
        "target_power": power,
        "runs": runs,
        "ab_shoppers": 2 * per_arm,
        "interleaving_shoppers": il_shoppers,
        "shopper_ratio": 2 * per_arm / il_shoppers,
        "ab_power": float((ab_calls == truth).mean()),
        "interleaving_power": float((il_calls == truth).mean()),
        "interleaving_wrong_calls": float(((il_calls != truth) & (il_calls != None)).mean()),  # noqa: E711
        "ab_wrong_calls": float(((ab_calls != truth) & (ab_calls != None)).mean()),  # noqa: E711
        "same_decision_rate": float((ab_calls == il_calls).mean()),
        "agreement_when_both_call": float(
            (ab_calls == il_calls)[(ab_calls != None) & (il_calls != None)].mean()  # noqa: E711
        ),
        "pilot": {"ab_lift_per_shopper": float(ab_diff), "decisive_share": float(decisive), "win_rate_a": q},
    }
