"""A/A false-positive rate, power against the calculator, CUPED and speed of the A/B toolkit.

Every figure comes from the simulated marketplace in `experiments.ab.simulation`, whose true metric
values are known, so the statistics are checked against the truth:
- A/A: 200 runs (the acceptance check: 5% +/- 2 points) and a longer run for a tighter estimate, with a
  Wilson 95% interval on the measured rate (a 200-run rate has a binomial s.d. of 1.5 points at 5% and
  2.8 points at 80%, so single 200-run rows fall outside the band now and then by chance alone);
- power: runs at the calculator's sample size for 80% power (acceptance: within 5 points);
- the same two checks for coupon policy A vs B on a generated (tiny) marketplace, shoppers reacting by
  the generator's true coupon response;
- CUPED: mean CI width on revenue per shopper with and without the pre-period covariate;
- speed: `assign` per call, `analyze` on a 50,000-shopper event log.
Run: .venv/bin/python -m bench.ab [--runs 200] [--long-runs 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from statsmodels.stats.proportion import proportion_confint

from bench import write_result
from experiments.ab.analysis import analyze
from experiments.ab.assignment import ExperimentSpec, assign
from experiments.ab.simulation import SCENARIOS, coupon_policy_scenario, run_simulation, simulate_events


def _row(name: str, result, check: float) -> dict:
    d = result.as_dict()
    hits = round(result.rejection_rate * result.runs)
    lo, hi = proportion_confint(hits, result.runs, alpha=0.05, method="wilson")
    gap = result.rejection_rate - result.expected_rate
    return {
        "check": name,
        **d,
        "rate_ci95": [float(lo), float(hi)],
        "gap": gap,
        "tolerance": check,
        "passes": abs(gap) <= check,
        "expected_in_ci": bool(lo <= result.expected_rate <= hi),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--long-runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    started = time.perf_counter()
    rec, coupon = SCENARIOS["recommender"], SCENARIOS["coupon"]
    with tempfile.TemporaryDirectory() as work:
        tmp = f"{work}/market"  # generated as a link inside `work`, removed with it
        from features.synth.generator import generate_marketplace

        generate_marketplace(tmp, "tiny", seed=args.seed)
        market = coupon_policy_scenario(tmp)
    checks = [  # (label, scenario, run_simulation options, tolerance on measured - expected)
        ("A/A conversion", rec, dict(mode="aa"), 0.02),
        ("A/A ctr (delta method)", rec, dict(mode="aa", metric="ctr"), 0.02),
        ("A/A revenue", rec, dict(mode="aa", metric="revenue_per_shopper"), 0.02),
        ("A/A conversion, long", rec, dict(mode="aa", runs=args.long_runs, seed=args.seed + 1), 0.02),
        (
            "A/A revenue, long",
            rec,
            dict(mode="aa", metric="revenue_per_shopper", runs=args.long_runs, seed=args.seed + 1),
            0.02,
        ),
        ("power recommender", rec, dict(mode="power"), 0.05),
        ("power coupon", coupon, dict(mode="power"), 0.05),
        ("A/A marketplace coupons", market, dict(mode="aa"), 0.02),
        ("power marketplace coupons", market, dict(mode="power"), 0.05),
        (
            "power marketplace, long",
            market,
            dict(mode="power", runs=args.long_runs, seed=args.seed + 1),
            0.05,
        ),
    ]
    rows = [
        _row(label, run_simulation(scenario, **{"runs": args.runs, "seed": args.seed, **options}), tol)
        for label, scenario, options, tol in checks
    ]
    plain = run_simulation(coupon, mode="aa", runs=args.runs, metric="revenue_per_shopper", seed=args.seed)
    adjusted = run_simulation(
        coupon, mode="aa", runs=args.runs, metric="revenue_per_shopper", seed=args.seed, cuped=True
    )
    simulation_seconds = time.perf_counter() - started

    spec = ExperimentSpec("bench", "bench-salt", ("control", "challenger"), (1.0, 1.0))
    n = 200_000
    t0 = time.perf_counter()
    for i in range(n):
        assign(spec, f"shopper-{i}")
    assign_us = (time.perf_counter() - t0) / n * 1e6
    events = simulate_events(rec, 50_000, seed=1)
    t0 = time.perf_counter()
    analyze(events, "sim")
    analyze_seconds = time.perf_counter() - t0

    result = {
        "checks": rows,
        "cuped": {
            "metric": "revenue_per_shopper",
            "runs": args.runs,
            "ci_width_plain": plain.mean_ci_width,
            "ci_width_cuped": adjusted.mean_ci_width,
            "width_ratio": adjusted.mean_ci_width / plain.mean_ci_width,
            "false_positive_rate_cuped": adjusted.rejection_rate,
        },
        "assign_us_per_call": assign_us,
        "analyze_seconds_50k_shoppers": analyze_seconds,
        "analyze_events": len(events),
        "simulation_seconds": simulation_seconds,
    }
    header = (
        f"{'check':<26}{'runs':>6}{'units':>7}{'measured':>10}{'95% CI':>16}{'expected':>10}"
        f"{'coverage':>10}{'in band':>9}{'exp. in CI':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ci = f"[{r['rate_ci95'][0]:.3f},{r['rate_ci95'][1]:.3f}]"
        print(
            f"{r['check']:<26}{r['runs']:>6}{r['n_units']:>7}{r['rejection_rate']:>10.3f}{ci:>16}"
            f"{r['expected_rate']:>10.3f}{r['ci_coverage']:>10.3f}{'yes' if r['passes'] else 'NO':>9}"
            f"{'yes' if r['expected_in_ci'] else 'NO':>11}"
        )
    print(
        "in band: |measured - expected| within the acceptance tolerance (2 points A/A, 5 points power); "
        "with 200 runs the binomial s.d. alone is 1.5 / 2.8 points.\nexp. in CI: the expected rate lies "
        "in the Wilson 95% interval of the measured one."
    )
    c = result["cuped"]
    print(
        f"\nCUPED on revenue per shopper: mean CI width {c['ci_width_plain']:.3f} -> "
        f"{c['ci_width_cuped']:.3f} (x{c['width_ratio']:.2f}), "
        f"A/A false-positive rate with CUPED {c['false_positive_rate_cuped']:.3f}"
    )
    print(
        f"assign: {assign_us:.2f} us/call; analyze on {len(events):,} events (50,000 shoppers): "
        f"{analyze_seconds:.2f} s; simulations {simulation_seconds:.0f} s"
    )
    write_result("ab", result)


if __name__ == "__main__":
    main()
