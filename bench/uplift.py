"""Precision-marketing benchmark: planner versus oracle and response-model plans, confidence-interval
coverage of the campaign report, and the uplift models on Hillstrom-like data.

    .venv/bin/python -m bench.uplift [--shoppers 100000] [--campaigns 200] [--seeds 3] [--quick]

Prints tables and writes bench/results/uplift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "uplift.json"


def planner_bench(n: int, budget: float, learner: str, seed: int) -> dict:
    """Learn effects from a randomised past campaign; plan; score every plan by the true effects."""
    from models.uplift.effects import CouponEffectModel
    from models.uplift.planner import evaluate_assignment, plan_campaign, response_plan
    from models.uplift.simulate import coupon_marketplace, draw_campaign

    market = coupon_marketplace(n=n, seed=seed)
    past = draw_campaign(market, control_share=0.25, seed=seed + 1)
    X = pd.get_dummies(market["features"], dtype=float)
    t0 = time.perf_counter()
    model = CouponEffectModel(learner=learner, random_state=seed).fit(
        X, past["arm"], past["converted"], past["spend"], past["redeemed"]
    )
    candidates = model.predict_candidates(X, np.arange(n))
    fit_s = time.perf_counter() - t0
    truth = market["truth"].rename(columns={"shopper": "shopper_id"})
    coupons, margin = market["coupons"], market["margin"]
    t0 = time.perf_counter()
    plan = plan_campaign(candidates, coupons, budget, margin_rate=margin, control_share=0.0)
    plan_s = time.perf_counter() - t0
    oracle = plan_campaign(truth, coupons, budget, margin_rate=margin, control_share=0.0)
    response = response_plan(candidates, coupons, budget, margin_rate=margin)
    scored = {
        "planner": evaluate_assignment(plan.assignments, truth, coupons, margin),
        "oracle": evaluate_assignment(oracle.assignments, truth, coupons, margin),
        "response_model": evaluate_assignment(response, truth, coupons, margin),
    }
    profit = {k: v["incremental_profit"] for k, v in scored.items()}
    return {
        "shoppers": n,
        "budget": budget,
        "learner": learner,
        "plans": scored,
        "planner_vs_oracle": profit["planner"] / profit["oracle"],
        "planner_vs_response": profit["planner"] / profit["response_model"],
        "fit_seconds": fit_s,
        "plan_seconds": plan_s,
    }


def model_bench(seeds: int, models: list[str]) -> dict:
    """Hillstrom-like data (64,000 rows), any e-mail versus none, outcome visit, 50/50 split seed 42."""
    from lightgbm import LGBMClassifier

    from experiments.evaluate_uplift import evaluate_models, load_campaign, score, split_campaign
    from models.uplift import SLearner
    from models.uplift.simulate import hillstrom_like

    per_seed = []
    for seed in range(seeds):
        data, _ = hillstrom_like(n=64_000, seed=seed)
        campaign = load_campaign(data, "segment", "Mens E-Mail,Womens E-Mail", "No E-Mail", "visit")
        train, test = split_campaign(campaign, 0.5, 42)
        # scikit-uplift's reference: S-learner (SoloModel) on LightGBM defaults
        reference = SLearner(LGBMClassifier(verbose=-1, n_jobs=1)).fit(
            train.X, train.treatment, train.outcome
        )
        rows = [{"model": "reference-s-lgbm-defaults", **score(test.outcome, reference.predict_uplift(test.X),
                                                                test.treatment)}]  # fmt: skip
        for row in evaluate_models(train, test, models):
            row.pop("cv_qini", None)
            rows.append(row)
        per_seed.append(rows)
    names = [r["model"] for r in per_seed[0]]
    metrics = ["qini_auc", "auuc", "uplift@30", "uplift@10", "uplift@30_by_group"]
    table = []
    for i, name in enumerate(names):
        entry = {"model": name}
        for m in metrics:
            values = [rows[i][m] for rows in per_seed]
            entry[m] = float(np.mean(values))
            entry[f"{m}_sd"] = float(np.std(values))
        if "chosen" in per_seed[0][i]:
            entry["chosen"] = [rows[i]["chosen"] for rows in per_seed]
        table.append(entry)
    return {"seeds": seeds, "rows": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers", type=int, default=100_000)
    parser.add_argument("--budget-per-shopper", type=float, default=1 / 3, help="Budget = this x shoppers.")
    parser.add_argument("--learner", default="x")
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="s,t,x,dr,ct,s-lr,t-lr,x-lr,ens,auto")
    parser.add_argument("--quick", action="store_true", help="Small sizes, for a smoke run.")
    args = parser.parse_args()
    if args.quick:
        args.shoppers, args.campaigns, args.seeds, args.models = 10_000, 20, 1, "s,x"
    from experiments.campaign_report import coverage_study

    t0 = time.perf_counter()
    planner = planner_bench(args.shoppers, args.shoppers * args.budget_per_shopper, args.learner, seed=0)
    print(f"\nPlanner at budget {planner['budget']:.0f} CNY, {planner['shoppers']:,} shoppers (true effects)")
    print(f"{'plan':<16}{'shoppers':>10}{'inc.conv':>10}{'inc.revenue':>13}{'cost':>10}{'inc.profit':>12}")
    for name, v in planner["plans"].items():
        print(
            f"{name:<16}{v['shoppers']:>10}{v['incremental_conversions']:>10.1f}{v['incremental_revenue']:>13.0f}"
            f"{v['cost']:>10.0f}{v['incremental_profit']:>12.0f}"
        )
    print(
        f"planner / oracle = {planner['planner_vs_oracle']:.3f} (target >= 0.90); "
        f"planner / response model = {planner['planner_vs_response']:.2f} (target >= 1.5)"
    )

    coverage = coverage_study(n_campaigns=args.campaigns, audience=4000, control_share=0.2, seed=0)
    print(f"\n95% CI coverage over {coverage['n_campaigns']} simulated campaigns (target >= 0.90)")
    for metric, share in coverage["coverage"].items():
        print(f"  {metric:<34}{share:.3f}")

    models = model_bench(args.seeds, args.models.split(","))
    print(f"\nHillstrom-like simulation, mean over {models['seeds']} seeds (test half of 64,000 rows)")
    print(f"{'model':<28}{'qini_auc':>10}{'auuc':>8}{'uplift@30':>11}{'uplift@10':>11}{'@30 by_group':>14}")
    for r in models["rows"]:
        print(
            f"{r['model']:<28}{r['qini_auc']:>10.4f}{r['auuc']:>8.4f}{r['uplift@30']:>11.4f}"
            f"{r['uplift@10']:>11.4f}{r['uplift@30_by_group']:>14.4f}"
        )
    result = {
        "planner": planner,
        "ci_coverage": coverage,
        "hillstrom_like_models": models,
        "seconds": time.perf_counter() - t0,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "args": vars(args),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nwrote {RESULTS} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
