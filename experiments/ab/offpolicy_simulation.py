"""Off-policy estimates checked against the candidate's true online rates on a generated marketplace.

Each run logs `pages` requests of uniformly drawn shoppers served by the logging model with epsilon
mixing (`offpolicy.sample_explore_pages`, the pool being the whole catalog), draws clicks and purchases
from the shoppers' true tastes (`experiments.ab.pages`), and estimates the candidate's click and
purchase rate per slot with IPS, SNIPS and DR. The truth is the candidate's expected rate over the same
shopper distribution, so the share of runs whose interval covers it is the coverage.
"""

from __future__ import annotations

import numpy as np

from experiments.ab import offpolicy
from experiments.ab.pages import PageWorld

INTERVALS = ("ips", "snips", "dr")


def coverage(
    world: PageWorld,
    logging: str,
    candidate: str,
    *,
    runs: int = 200,
    pages: int = 50_000,
    epsilon: float = 0.2,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    k, n_items = world.slots, world.n_products
    truth = world.true_rates(candidate)
    hits = {(m, e): 0 for m in truth for e in INTERVALS}
    estimates = {(m, e): [] for m in truth for e in (*INTERVALS, "dm")}
    widths = {(m, e): [] for m in truth for e in INTERVALS}
    ess = []
    for _ in range(runs):
        shopper = rng.integers(0, len(world.shopper_ids), pages)
        logged_top = world.rankings[logging][shopper, :k]
        shown, prop, explored = offpolicy.sample_explore_pages(logged_top, n_items, epsilon, rng)
        clicks, purchases = world.react(shopper, shown, rng)
        result = offpolicy.evaluate(
            shown,
            prop,
            explored,
            {"ctr": clicks, "purchase_rate": purchases},
            world.rankings[candidate][shopper],
            alpha,
        )
        for metric, r in result.items():
            for e in INTERVALS:
                lo, hi = r[f"{e}_ci"]
                hits[metric, e] += lo <= truth[metric] <= hi
                estimates[metric, e].append(r[e])
                widths[metric, e].append(hi - lo)
            estimates[metric, "dm"].append(r["dm"])
        ess.append(np.mean(result["ctr"]["ess_per_slot"]))
    out = {
        "logging": logging,
        "candidate": candidate,
        "runs": runs,
        "pages_per_run": pages,
        "epsilon": epsilon,
        "truth": truth,
        "logging_truth": world.true_rates(logging),
        "mean_ess_per_slot": float(np.mean(ess)),
    }
    for metric in truth:
        out[metric] = {
            e: {
                "coverage": hits[metric, e] / runs,
                "mean_estimate": float(np.mean(estimates[metric, e])),
                "mean_ci_width": float(np.mean(widths[metric, e])),
            }
            for e in INTERVALS
        }
        out[metric]["dm"] = {"mean_estimate": float(np.mean(estimates[metric, "dm"]))}
    return out
