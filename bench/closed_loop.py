"""Closed-loop campaigns against the oracle on generated marketplaces (`marketing.closed_loop`).

    nice .venv/bin/python -m bench.closed_loop [--scale demo] [--seeds 7,11] [--budgets 3000,10000]
        [--rounds 8] [--fatigue 1.0] [--frequency-cap N] [--history posterior|features] [--name closed_loop]

Per seed and budget, every round of every strategy; then the issue's targets measured: the closed
loop's profit / oracle from round 6 on (>= 0.90 wanted), rounds where true spend exceeds the budget
(none wanted), and how often the pre-launch policy-value interval covers the realised profit (>= 90%
wanted). Also per run: profit against the oracle that holds out the same share of its audience
(`profit_vs_design_oracle`), and, per round of the closed loop, the randomised rows it had, the
correlation of its uplift with the truth's and its overlap with the oracle's choices (diagnostics
the learner never sees). Writes bench/results/NAME.json and a PNG of the three curves next to it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from features.synth import generate_marketplace
from marketing.closed_loop import LOOP_SCALES, STRATEGIES, LoopSettings, load_loop_market, simulate_loop

RESULTS = Path(__file__).parent / "results"


def summarize(rows: pd.DataFrame, from_round: int = 6) -> dict:
    late = rows[rows["round"] >= from_round]
    loop_late = late[late["strategy"] == "closed_loop"]
    pv = rows.dropna(subset=["policy_value_low"])
    covered = (pv["policy_value_low"] <= pv["realized_profit"]) & (
        pv["realized_profit"] <= pv["policy_value_high"]
    )
    # the interval for the plan's expectation (policy_value_low/high add the round's own draw)
    covered_expected = (pv["policy_value_mean_low"] <= pv["plan_true_profit"]) & (
        pv["plan_true_profit"] <= pv["policy_value_mean_high"]
    )
    return {
        "closed_loop_min_vs_oracle_from_round_6": float(loop_late["profit_vs_oracle"].min()),
        "mean_vs_oracle_from_round_6": late.groupby("strategy")["profit_vs_oracle"].mean().round(3).to_dict(),
        # against the oracle under the same design (the same random holdout of its audience)
        "mean_vs_design_oracle_from_round_6": late.groupby("strategy")["profit_vs_design_oracle"]
        .mean()
        .round(3)
        .to_dict(),
        # diagnostics against the truth: what the learner had and how well it ranked
        "closed_loop_by_round": rows[rows["strategy"] == "closed_loop"]
        .groupby("round")[["randomized_rows", "uplift_corr", "oracle_overlap", "oracle_arm_agreement"]]
        .mean()
        .round(3)
        .to_dict(orient="index"),
        "static_uplift_corr": float(rows.loc[rows["strategy"] == "no_exploration", "uplift_corr"].mean()),
        "rounds_over_budget": int((rows["true_spend"] > rows["budget"]).sum()),
        "max_true_spend_vs_budget": (rows["true_spend"] / rows["budget"])
        .groupby(rows["strategy"])
        .max()
        .round(3)
        .to_dict(),
        # without the hard cap: what the grants would have cost, and how often the cap turned one away
        "max_uncapped_spend_vs_budget": (rows["uncapped_spend"] / rows["budget"])
        .groupby(rows["strategy"])
        .max()
        .round(3)
        .to_dict(),
        "mean_cap_binds": rows.groupby("strategy")["cap_binds"].mean().round(3).to_dict(),
        "policy_value_coverage_of_realized": float(covered.mean()) if len(pv) else None,
        "policy_value_coverage_of_expected": float(covered_expected.mean()) if len(pv) else None,
        "policy_value_rounds": int(len(pv)),
        "policy_value_median_width_vs_oracle": float(
            ((pv["policy_value_high"] - pv["policy_value_low"]) / pv["oracle_profit"]).median()
        )
        if len(pv)
        else None,
    }


def plot(rows: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = rows.groupby(["seed", "budget"])
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.2), squeeze=False)
    for ax, ((seed, budget), run) in zip(axes[0], runs, strict=True):
        for strategy in STRATEGIES:
            r = run[run["strategy"] == strategy]
            ax.plot(r["round"], r["profit_vs_oracle"], marker="o", label=strategy)
        ax.axhline(0.9, color="grey", linestyle=":")
        ax.set_title(f"seed {seed}, budget {budget:,.0f}")
        ax.set_xlabel("round")
    axes[0][0].set_ylabel("profit / oracle")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="demo", choices=sorted(LOOP_SCALES))
    ap.add_argument("--seeds", default="7,11")
    ap.add_argument("--budgets", default="3000,10000")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--fatigue", type=float, default=1.0, help="truth: effect x this per recent coupon")
    ap.add_argument("--frequency-cap", type=int, default=None, help="contact policy of every strategy")
    ap.add_argument("--history", default="posterior", help="closed loop: posterior or features")
    ap.add_argument("--explore-share", type=float, default=0.1, help="closed loop: first round's probe share")
    ap.add_argument("--explore-floor", type=float, default=0.02, help="closed loop: lowest probe share")
    ap.add_argument("--explore-decay", type=float, default=0.5, help="closed loop: share x round ** -this")
    ap.add_argument("--name", default="closed_loop", help="results file stem in bench/results/")
    args = ap.parse_args()
    rules = {
        "fatigue": args.fatigue,
        "frequency_cap": args.frequency_cap,
        "history": args.history,
        "explore_share": args.explore_share,
        "explore_floor": args.explore_floor,
        "explore_decay": args.explore_decay,
    }
    warnings.filterwarnings("ignore", category=FutureWarning)
    all_rows, timings = [], {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
            directory = Path(tmp) / "market"
            generate_marketplace(directory, scale=LOOP_SCALES[args.scale], seed=seed)
            settings = LoopSettings(rounds=args.rounds, seed=seed)
            market = load_loop_market(directory, settings.coupons, settings.margin_rate, seed=seed)
            for budget in [float(b) for b in args.budgets.split(",")]:
                t0 = time.perf_counter()
                s = LoopSettings(rounds=args.rounds, budget=budget, seed=seed, **rules)
                rows = pd.DataFrame(simulate_loop(market, s)).assign(seed=seed)
                timings[f"{seed}/{budget:.0f}"] = round(time.perf_counter() - t0, 1)
                all_rows.append(rows)
                print(
                    rows.pivot(index="round", columns="strategy", values="profit_vs_oracle").round(2),
                    f"\nseed {seed} budget {budget:,.0f}",
                    flush=True,
                )
                write(args, rules, pd.concat(all_rows, ignore_index=True), timings)  # each run kept at once


def write(args, rules: dict, rows: pd.DataFrame, timings: dict) -> None:
    per_run = {f"{k[0]}/{k[1]:.0f}": summarize(g) for k, g in rows.groupby(["seed", "budget"])}
    result = {
        "scale": args.scale,
        "rounds": args.rounds,
        **rules,
        "targets": {"closed_loop_vs_oracle_by_round_6": 0.9, "policy_value_coverage": 0.9},
        "overall": summarize(rows),
        "per_run": per_run,
        "seconds": timings,
        "rows": json.loads(rows.to_json(orient="records")),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    plot(rows, RESULTS / f"{args.name}.png")
    print(json.dumps({"overall": result["overall"], "per_run": per_run}, indent=1), flush=True)


if __name__ == "__main__":
    main()
