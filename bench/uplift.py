"""Precision-marketing benchmark: planner versus oracle and response-model plans, confidence-interval
coverage of the campaign report, and the uplift models on Hillstrom-like data.

    .venv/bin/python -m bench.uplift [--shoppers 100000] [--campaigns 200] [--seeds 3]
        [--sections planner,marketplace,coverage,hillstrom] [--quick]

Prints tables and writes bench/results/uplift.json (sections not run keep their stored results).
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


NEW_COUPONS = pd.DataFrame(  # the new campaign: terms the past campaigns never ran platform-wide
    {
        "coupon_id": ["NEW30_199", "NEW15PCT_CAP60"],
        "kind": ["amount_off", "percent_off"],
        "face_value": [30.0, 0.15],
        "min_spend": [199.0, 0.0],
        "cap": [np.nan, 60.0],
    }
)


def _true_candidates(directory: Path, events: pd.DataFrame, shopper_ids, as_of) -> pd.DataFrame:
    """Every (shopper, new coupon) option with the truth's probabilities, spend, gross basket, basket
    spread and redemption rate, so `score_options` prices its cost exactly as the generator draws it."""
    from features.synth.model import BASKET_SIGMA, REDEEM_RATE, TREATED_BASKET_LIFT
    from features.synth.truth import coupon_response, load_truth, shopper_rfm

    truth = load_truth(directory)
    rfm = shopper_rfm(events, shopper_ids, as_of)
    frames = []
    for c in NEW_COUPONS.itertuples(index=False):
        cap = None if np.isnan(c.cap) else c.cap
        r = coupon_response(truth, rfm, kind=c.kind, value=c.face_value, cap=cap, min_spend=c.min_spend)
        frames.append(
            r.drop(columns="true_uplift").assign(
                coupon_id=c.coupon_id,
                basket_mean=TREATED_BASKET_LIFT * r["spend_control"] / r["p_control"],
                basket_sigma=BASKET_SIGMA,
                redeem_rate=REDEEM_RATE,
            )
        )
    return pd.concat(frames, ignore_index=True)


def marketplace_bench(directory: Path, budgets: list[float], margin: float, channel: str = "site") -> dict:
    """Learn effects from a generated marketplace's past campaigns, plan a new campaign of coupons with
    new terms for every shopper at several budgets, and score each plan with the truth API."""
    import json as _json

    from features.campaign_features import (
        EVENT_COLUMNS,
        campaign_training_table,
        encode_features,
        shopper_history_features,
    )
    from models.uplift.planner import evaluate_assignment, plan_campaign, response_plan, score_options
    from training.uplift import fit_effect_model, fit_terms_model

    directory = Path(directory)
    _, labels = campaign_training_table(directory)
    t0 = time.perf_counter()
    terms_model = fit_terms_model(directory)  # what `crosscart campaign plan --data` now fits
    fit_s = time.perf_counter() - t0
    kind_model, _ = fit_effect_model(directory, seed=0)  # the per-kind model (registered; the old --data)

    as_of = pd.Timestamp(_json.loads((directory / "manifest.json").read_text())["end"])
    shoppers = pd.read_parquet(directory / "shoppers.parquet")
    shoppers = shoppers[pd.to_datetime(shoppers["created_at"], utc=True) < as_of]
    events = pd.read_parquet(directory / "events", columns=list(EVENT_COLUMNS)).dropna(subset=["shopper_id"])
    table = shopper_history_features(events, shoppers, as_of, channel)
    ids = table.index.to_numpy()
    Xnew = encode_features(table, list(terms_model.feature_names_in_))
    learned = terms_model.predict_candidates(Xnew, ids, NEW_COUPONS)
    by_kind = kind_model.predict_candidates(Xnew, ids)
    per_kind = pd.concat(
        [
            by_kind[by_kind["coupon_id"] == c.kind].assign(coupon_id=c.coupon_id)
            for c in NEW_COUPONS.itertuples()
        ],
        ignore_index=True,
    )
    truth = _true_candidates(directory, events, ids, as_of)
    true_opts = score_options(truth, NEW_COUPONS, margin).set_index(["shopper_id", "coupon_id"])
    merged = learned.set_index(["shopper_id", "coupon_id"])
    quality = {
        "uplift_corr": float(
            np.corrcoef(
                merged["p_treated"] - merged["p_control"], true_opts.loc[merged.index, "inc_conversions"]
            )[0, 1]
        ),
        "predicted_over_true_cost_all": float(
            score_options(learned, NEW_COUPONS, margin)["cost"].sum() / true_opts["cost"].sum()
        ),
    }
    rows = []
    for budget in budgets:
        plans = {
            "learned": plan_campaign(
                learned,
                NEW_COUPONS,
                budget,
                margin_rate=margin,
                control_share=0.0,
                cost_safety=terms_model.cost_factor_,
            ),
            "learned_no_safety": plan_campaign(
                learned, NEW_COUPONS, budget, margin_rate=margin, control_share=0.0
            ),
            "per_kind_model": plan_campaign(
                per_kind, NEW_COUPONS, budget, margin_rate=margin, control_share=0.0
            ),
            "oracle": plan_campaign(truth, NEW_COUPONS, budget, margin_rate=margin, control_share=0.0),
        }
        scored = {k: evaluate_assignment(v.assignments, truth, NEW_COUPONS, margin) for k, v in plans.items()}
        for k, v in plans.items():
            scored[k]["predicted_cost"] = v.summary["expected_cost"]
            scored[k]["predicted_profit"] = v.summary["expected_incremental_profit"]
        response = response_plan(learned, NEW_COUPONS, budget, margin_rate=margin)
        scored["response_model"] = evaluate_assignment(response, truth, NEW_COUPONS, margin)
        oracle = scored["oracle"]["incremental_profit"]
        # the oracle given what the learned plan truly spends: how well the spend was used
        same_spend = plan_campaign(
            truth, NEW_COUPONS, scored["learned"]["cost"], margin_rate=margin, control_share=0.0
        )
        same_spend = evaluate_assignment(same_spend.assignments, truth, NEW_COUPONS, margin)[
            "incremental_profit"
        ]
        rows.append(
            {
                "budget": budget,
                "plans": scored,
                "learned_vs_oracle": scored["learned"]["incremental_profit"] / oracle,
                "learned_vs_oracle_same_spend": scored["learned"]["incremental_profit"] / same_spend,
                # a ratio to a loss says nothing: then the response plan's (negative) profit is the answer
                "learned_vs_response": scored["learned"]["incremental_profit"] / response_profit
                if (response_profit := scored["response_model"]["incremental_profit"]) > 0
                else None,
                "per_kind_vs_oracle": scored["per_kind_model"]["incremental_profit"] / oracle,
                "learned_true_cost_over_budget": scored["learned"]["cost"] / budget,
                "no_safety_vs_oracle": scored["learned_no_safety"]["incremental_profit"] / oracle,
                "no_safety_true_cost_over_budget": scored["learned_no_safety"]["cost"] / budget,
                "per_kind_true_cost_over_budget": scored["per_kind_model"]["cost"] / budget,
            }
        )
    return {
        "market": directory.name,  # a temporary directory: its name, never this machine's path
        "seed": _json.loads((directory / "manifest.json").read_text())["seed"],
        "channel": channel,
        "margin": margin,
        "shoppers": len(ids),
        "past_assignments": len(labels),
        "fit_seconds": fit_s,
        "redeem_rate_learned": terms_model.redeem_rate_,
        "cost_factor_learned": terms_model.cost_factor_,
        "basket_sigma_learned": terms_model.basket_sigma_,
        "quality": quality,
        "budgets": rows,
    }


def model_bench(seeds: int, models: list[str]) -> dict:
    """Hillstrom-like data (64,000 rows), any e-mail versus none, outcome visit, 50/50 split seed 42."""
    from lightgbm import LGBMClassifier

    from models.uplift import SLearner
    from models.uplift.simulate import hillstrom_like
    from training.evaluate_uplift import evaluate_models, load_campaign, score, split_campaign

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
            row.pop("cv", None)
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


def marketplace_scenario(args) -> list[dict]:
    """The new campaign planned on generated marketplaces (`--markets`, or demo ones of `--market-seeds`)."""
    import tempfile

    from features.synth import generate_marketplace

    budgets = [float(b) for b in args.budgets.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(d) for d in args.markets.split(",") if d]
        for seed in [] if dirs else [int(x) for x in args.market_seeds.split(",")]:
            generate_marketplace(Path(tmp) / f"m{seed}", "demo", seed=seed)
            dirs.append(Path(tmp) / f"m{seed}")
        for d in dirs:
            r = marketplace_bench(d, budgets, args.margin)
            results.append(r)
            print(
                f"\nMarketplace seed {r['seed']}: new campaign (30 off 199, 15% off cap 60) for "
                f"{r['shoppers']:,} shoppers, learned from {r['past_assignments']:,} past assignments; "
                f"true figures. Learned cost safety factor {r['cost_factor_learned']:.2f}"
            )
            print(
                f"{'budget':>8}{'learned/oracle':>16}{'(same spend)':>14}{'no-safety/oracle':>18}"
                f"{'per-kind/oracle':>17}"
                f"{'profit learned':>16}{'response':>10}{'true cost/budget: learned':>27}{'no-safety':>11}"
                f"{'per-kind':>10}"
            )
            for b in r["budgets"]:
                plans = b["plans"]
                print(
                    f"{b['budget']:>8.0f}{b['learned_vs_oracle']:>16.3f}{b['learned_vs_oracle_same_spend']:>14.3f}"
                    f"{b['no_safety_vs_oracle']:>18.3f}"
                    f"{b['per_kind_vs_oracle']:>17.3f}{plans['learned']['incremental_profit']:>16.0f}"
                    f"{plans['response_model']['incremental_profit']:>10.0f}"
                    f"{b['learned_true_cost_over_budget']:>27.3f}{b['no_safety_true_cost_over_budget']:>11.3f}"
                    f"{b['per_kind_true_cost_over_budget']:>10.3f}"
                )
    return results


# section name -> its key in the results file
SECTIONS = {"planner": "planner", "marketplace": "marketplace", "coverage": "ci_coverage",
            "hillstrom": "hillstrom_like_models"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers", type=int, default=100_000)
    parser.add_argument("--budget-per-shopper", type=float, default=1 / 3, help="Budget = this x shoppers.")
    parser.add_argument("--learner", default="x")
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="s,t,x,dr,ct,s-lr,si-lr,t-lr,x-lr,ens,blend,auto")
    parser.add_argument(
        "--market-seeds", default="7,11", help="Demo marketplaces generated for the scenario."
    )
    parser.add_argument(
        "--markets", default="", help="Existing marketplace directories instead (comma-separated)."
    )
    parser.add_argument("--budgets", default="1000,3000,10000,30000", help="Campaign budgets (CNY).")
    parser.add_argument("--margin", type=float, default=0.3)
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="Comma-separated subset of " + ",".join(SECTIONS) + "; the others' stored results are kept.",
    )
    parser.add_argument("--quick", action="store_true", help="Small sizes, for a smoke run (writes nothing).")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if args.quick:
        args.shoppers, args.campaigns, args.seeds, args.models = 10_000, 20, 1, "s,x"
        args.market_seeds, args.budgets = args.market_seeds.split(",")[0], "3000"

    result: dict = {}
    seconds: dict = {}
    if "planner" in sections:
        t0 = time.perf_counter()
        result["planner"] = _planner_section(args)
        seconds["planner"] = time.perf_counter() - t0
    if "marketplace" in sections:
        t0 = time.perf_counter()
        result["marketplace"] = marketplace_scenario(args)
        seconds["marketplace"] = time.perf_counter() - t0
    if "coverage" in sections:
        from marketing.measurement import coverage_study

        t0 = time.perf_counter()
        coverage = coverage_study(n_campaigns=args.campaigns, audience=4000, control_share=0.2, seed=0)
        print(f"\n95% CI coverage over {coverage['n_campaigns']} simulated campaigns (target >= 0.90)")
        for metric, share in coverage["coverage"].items():
            print(f"  {metric:<34}{share:.3f}")
        result["ci_coverage"] = coverage
        seconds["coverage"] = time.perf_counter() - t0
    if "hillstrom" in sections:
        t0 = time.perf_counter()
        models = model_bench(args.seeds, args.models.split(","))
        print(f"\nHillstrom-like simulation, mean over {models['seeds']} seeds (test half of 64,000 rows)")
        print(
            f"{'model':<28}{'qini_auc':>10}{'auuc':>8}{'uplift@30':>11}{'uplift@10':>11}{'@30 by_group':>14}"
        )
        for r in models["rows"]:
            print(
                f"{r['model']:<28}{r['qini_auc']:>10.4f}{r['auuc']:>8.4f}{r['uplift@30']:>11.4f}"
                f"{r['uplift@10']:>11.4f}{r['uplift@30_by_group']:>14.4f}"
            )
            if "chosen" in r:
                print(f"{'':<28}chosen per seed: {', '.join(r['chosen'])}")
        result["hillstrom_like_models"] = models
        seconds["hillstrom"] = time.perf_counter() - t0
    if args.quick:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(_merge(RESULTS, result, seconds, sections, vars(args)), indent=2, default=float)
    )
    print(f"\nwrote {RESULTS} ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")


def _planner_section(args) -> dict:
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
    return planner


def _merge(path: Path, result: dict, seconds: dict, sections: list[str], args: dict) -> dict:
    """Sections not re-run keep their stored figures, with the seconds and arguments of the run that made
    them, so a slow section can be re-measured alone without losing the others."""
    previous = json.loads(path.read_text()) if path.exists() else {}
    old_seconds, old_args = previous.get("seconds", {}), previous.get("args", {})
    if not isinstance(old_seconds, dict):  # the one run that made every stored section
        old_seconds = {"previous run, all sections": old_seconds}
        old_args = {name: old_args for name in SECTIONS}
    kept = [name for name, key in SECTIONS.items() if name not in sections and key in previous]
    merged = {**{SECTIONS[name]: previous[SECTIONS[name]] for name in kept}, **result}
    return {
        **{key: merged[key] for key in SECTIONS.values() if key in merged},
        "seconds": {**{k: v for k, v in old_seconds.items() if kept and k not in sections}, **seconds},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "args": {**{k: v for k, v in old_args.items() if k in kept}, **{name: args for name in sections}},
    }


if __name__ == "__main__":
    main()
