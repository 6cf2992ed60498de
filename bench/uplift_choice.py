"""Model choice on Hillstrom-like campaigns: `auto` against scikit-uplift's own S, T and class-
transformation models, for every e-mail arm against no e-mail and every outcome (visit, conversion,
spend), on several simulated files of 64,000 customers (`models.uplift.simulate.hillstrom_like`).

    .venv/bin/python -m bench.uplift_choice [--seeds 8,9,10] [--models auto,blend] [--quick] [--out F]
    .venv/bin/python -m bench.uplift_choice --merge a.json,b.json   # seeds run in parallel, one summary
    .venv/bin/python -m bench.uplift_choice --reuse old.json        # re-run only changed choices
    .venv/bin/python -m bench.uplift_choice --auto auto-nested      # the rule set by nested CV
    .venv/bin/python -m bench.uplift_choice --outcomes conversion   # one outcome only
    .venv/bin/python -m bench.uplift_choice --arms "Womens E-Mail"  # one arm only

Each file is split 50/50 (stratified, seed 42) as `crosscart evaluate uplift` does; `auto` chooses on
the training half only. The default seeds were not used to choose `auto`'s default blend (seeds
0-7 were). Prints one line per (seed, arm, outcome), then per arm and outcome the mean gap over
seeds, and writes bench/results/uplift_choice.json. Every choice rule's pick (`NESTED_RULES`; `rule`
is `auto`'s) is also scored on the test half (`by_rule`), so a run with `--auto auto-nested` shows
the rule before and after nested cross-validation on the same files.
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

from models.uplift.selection import NESTED_RULES  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "uplift_choice.json"
ARMS = ("Mens E-Mail", "Womens E-Mail")
OUTCOMES = ("visit", "conversion", "spend")


def run_pair(
    data, arm: str, outcome: str, models: list[str], auto_key: str = "auto", split_seed: int = 42
) -> dict:
    from training.evaluate_uplift import evaluate_models, load_campaign, split_campaign

    campaign = load_campaign(data, "segment", arm, "No E-Mail", outcome)
    train, test = split_campaign(campaign, 0.5, split_seed)
    t0 = time.perf_counter()
    rows = evaluate_models(train, test, models, random_state=42, baselines=True)
    seconds = time.perf_counter() - t0
    ours = {r["model"]: r for r in rows if not r.get("baseline")}
    base = {r["model"]: r for r in rows if r.get("baseline")}
    auto = ours[auto_key]
    verdict = {}
    for metric in ("qini_auc", "uplift@30"):
        gap = auto["vs_baselines"][metric]
        verdict[metric] = {
            "auto": auto[metric],
            "best_baseline": gap["best_baseline"],
            "best_baseline_value": base[gap["best_baseline"]][metric],
            "gap": gap["gap"],
            "gap_se": gap["gap_se"],
            "matches": gap["gap"] >= -1e-9,  # a tie (the same model as the baseline) matches
        }
    return {
        "arm": arm,
        "outcome": outcome,
        "auto_key": auto_key,
        "chosen": auto["chosen"],
        "rule": auto["rule"],
        "verdict": verdict,
        "rows": [{k: v for k, v in r.items() if k not in ("cv", "nested")} for r in rows],
        "auto_cv": auto["cv"],
        "auto_nested": auto["nested"],
        "by_rule": by_rule(train, test, auto, base),
        "seconds": seconds,
    }


def by_rule(train, test, auto: dict, base: dict) -> dict[str, dict]:
    """Every choice rule's pick on the training half (`choice_by_rule`), scored on the test half like
    `auto`: `rule` is what `auto` chose before nested cross-validation, the others what it would
    choose under each rule nested cross-validation weighs. Picks equal to `auto`'s reuse its row;
    the others are fitted on the training half (seeded as `auto`'s refit)."""
    from models.uplift.base import is_binary_outcome
    from models.uplift.selection import UpliftEnsemble, gate_params, make_model
    from training.evaluate_uplift import compare_to_baselines, score, sklift_baselines

    scored = {auto["chosen"]: {m: auto[m] for m in ("qini_auc", "uplift@30", "vs_baselines")}}
    base_preds = None
    for key in dict.fromkeys(auto["choice_by_rule"].values()):
        if key in scored:
            continue
        if base_preds is None:
            base_preds = sklift_baselines(train, test, 42)[1]
        if "+" in key:
            model = UpliftEnsemble(tuple(key.split("+")), standardise=True, random_state=42)
        else:
            model = make_model(key, binary=is_binary_outcome(train.outcome), random_state=42)
        model.fit(train.X, train.treatment, train.outcome, **gate_params(key, train.gate))
        uplift = np.asarray(model.predict_uplift(test.X), float)
        row = score(test.outcome, uplift, test.treatment)
        scored[key] = {
            "qini_auc": row["qini_auc"],
            "uplift@30": row["uplift@30"],
            "vs_baselines": compare_to_baselines(test, uplift, base_preds, seed=42),
        }
    return {rule: {"chosen": key, **scored[key]} for rule, key in auto["choice_by_rule"].items()}


def main() -> None:
    from features.loaders import read_table
    from models.uplift.simulate import hillstrom_like

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        default="8,9,10",
        help="Simulated files' seeds; with --data, the seeds of the 50/50 split of that one file.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="A real campaign file with Hillstrom's columns instead of simulated ones "
        "(`python -m bench.hillstrom` fetches the real file to var/data/hillstrom.csv).",
    )
    parser.add_argument("--models", default="auto,blend")
    parser.add_argument("--rows", type=int, default=64_000)
    parser.add_argument(
        "--outcomes",
        default=",".join(OUTCOMES),
        help="Outcomes to run (comma-separated; default all): a change that only moves one outcome's "
        "choices (the funnel: conversion) is re-run on that outcome alone.",
    )
    parser.add_argument(
        "--arms",
        default=",".join(ARMS),
        help="Arms to run (comma-separated; default all): a question about one arm's pairs gets more "
        "seeds in the same time.",
    )
    parser.add_argument(
        "--auto",
        default="auto",
        choices=("auto", "auto-nested"),
        help="The model judged as `auto` (`auto-nested`: its choice rule set by nested cross-validation).",
    )
    parser.add_argument("--quick", action="store_true", help="One seed, 16,000 rows.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results JSON (default %(default)s).")
    parser.add_argument(
        "--merge",
        default="",
        help="Results files of runs on other seeds (comma-separated): one summary in --out.",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        help="An earlier results file: a pair whose stored cross-validation summary leads today's "
        "`decide` to the choice it made then is copied, not re-run (same data, same fitted model).",
    )
    args = parser.parse_args()
    if args.merge:
        pairs = [p for f in args.merge.split(",") for p in json.loads(Path(f).read_text())["pairs"]]
        _write(sorted(pairs, key=lambda p: p["seed"]), args, time.perf_counter(), final=True)
        return
    if args.quick:
        args.seeds, args.rows = "0", 16_000
    models = [m for m in args.models.split(",") if m]
    models = [args.auto if m == "auto" else m for m in models]
    if args.auto not in models:
        models.insert(0, args.auto)
    t0 = time.perf_counter()
    pairs = []
    print(
        f"{'seed':>4} {'arm':<14}{'outcome':<11}"
        f"{'qini auto':>10}{'best sklift':>12}{'gap (se)':>18}"
        f"{'u@30 auto':>11}{'best sklift':>12}{'gap (se)':>18}{'both':>6}{'s':>5}  auto's choice (rule)"
    )
    reusable = _reusable(args, models)
    real = None if args.data is None else read_table(args.data)
    for seed in [int(s) for s in args.seeds.split(",")]:
        data = real
        for arm in [a for a in ARMS if a in args.arms.split(",")]:
            for outcome in [o for o in OUTCOMES if o in args.outcomes.split(",")]:
                r = reusable.get((seed, arm, outcome))
                if r is None:
                    if data is None:
                        data, _ = hillstrom_like(n=args.rows, seed=seed)
                    split_seed = 42 if real is None else seed
                    r = run_pair(data, arm, outcome, models, args.auto, split_seed)
                    r["seed"] = seed
                else:
                    r = {**r, "reused": True}
                pairs.append(r)
                q, u = r["verdict"]["qini_auc"], r["verdict"]["uplift@30"]
                print(
                    f"{seed:>4} {arm:<14}{outcome:<11}"
                    f"{q['auto']:>10.4f}{q['best_baseline_value']:>12.4f}"
                    f"{q['gap']:>+10.4f} ({q['gap_se']:.4f})"
                    f"{u['auto']:>11.4f}{u['best_baseline_value']:>12.4f}"
                    f"{u['gap']:>+10.4f} ({u['gap_se']:.4f})"
                    f"{'yes' if q['matches'] and u['matches'] else 'no':>6}{r['seconds']:>5.0f}"
                    f"  {r['chosen']} ({r.get('rule')})",
                    flush=True,
                )
                _write(pairs, args, t0, final=False)  # partial results survive an interrupted run
    _write(pairs, args, t0, final=True)


def _reusable(args, models: list[str]) -> dict[tuple, dict]:
    """Pairs of the `--reuse` file (same rows or data file, same models) whose stored cross-validation summary
    leads today's `decide` with `AutoUplift`'s defaults to the choice made then. The split, the
    candidates' fits and the refit are seeded and deterministic, so such a pair's rows are what a
    re-run would give; only pairs whose choice changes are re-run."""
    if args.reuse is None:
        return {}
    from models.uplift.selection import decide, make_model, rule_choice

    old = json.loads(args.reuse.read_text())
    old_auto = old["args"].get("auto", "auto")
    old_models = [old_auto if m == "auto" else m for m in old["args"]["models"].split(",")]
    data = None if args.data is None else args.data.name
    if old["args"]["rows"] != args.rows or old_models != models or old["args"].get("data") != data:
        raise SystemExit(f"{args.reuse.name} was run with other --rows, --models, --auto or --data")
    auto = make_model(models[0])

    def same(p: dict) -> bool:
        cv = p["auto_cv"]
        gated = auto.gated_default in cv  # scored: the file had a gate
        anchors = auto.gated_anchors if gated else auto.anchors
        if anchors and not all("lead_of_reference" in v for v in cv.values()):
            return False  # stored before anchors: the summary cannot replay today's rule
        if "by_rule" not in p:
            return False  # stored before nested cross-validation: no per-rule picks to report
        nested = p["auto_nested"] if auto.nested else None
        rule = "rule" if nested is None else decide(nested, list(nested), "rule", auto.rule_se, False)
        default = auto.gated_default if gated else auto.default
        args = (list(cv), default, auto.default_se, auto.combine, anchors, auto.anchor_se)
        return rule == p["rule"] and rule_choice(rule, cv, *args) == p["chosen"]

    return {(p["seed"], p["arm"], p["outcome"]): p for p in old["pairs"] if same(p)}


def by_pair(pairs: list[dict]):
    """Per arm and outcome that has runs: its runs (one per seed) and the start of its summary entry."""
    for arm in ARMS:
        for outcome in OUTCOMES:
            runs = [p for p in pairs if p["arm"] == arm and p["outcome"] == outcome]
            if runs:
                yield runs, {"arm": arm, "outcome": outcome, "seeds": [p["seed"] for p in runs]}


def mean_gap(gaps: np.ndarray) -> dict[str, float]:
    """Mean of per-seed gaps and its standard error over seeds (NaN with one seed)."""
    se = float(gaps.std(ddof=1) / np.sqrt(len(gaps))) if len(gaps) > 1 else float("nan")
    return {"gap": float(gaps.mean()), "se": se}


def per_pair_summary(pairs: list[dict], rule: str | None = None) -> list[dict]:
    """Per arm and outcome, over seeds: auto's mean gap to the best scikit-uplift model and its
    standard error over seeds, against two yardsticks. `vs_best_fixed`: the one baseline with the
    best mean over seeds on that metric (what a marketer would otherwise run); `vs_best_per_seed`:
    the best baseline of each seed's test set (an oracle that picks the luckiest of six on the
    test rows, so even a model equal to the best baseline on average trails it). With a `rule`
    (`NESTED_RULES`), auto's scores are those of that rule's pick (`by_rule`)."""
    out = []
    for runs, entry in by_pair(pairs):
        for name in ("vs_best_fixed", "vs_best_per_seed"):
            entry[name] = {}
        for metric in ("qini_auc", "uplift@30"):
            auto = np.array(
                [
                    p["by_rule"][rule][metric]
                    if rule
                    else next(r for r in p["rows"] if r["model"] == p.get("auto_key", "auto"))[metric]
                    for p in runs
                ]
            )
            base = {
                r["model"]: [] for r in runs[0]["rows"] if r.get("baseline")
            }  # the same baselines in every seed
            for p in runs:
                for r in p["rows"]:
                    if r.get("baseline"):
                        base[r["model"]].append(r[metric])
            fixed = max(base, key=lambda k: np.mean(base[k]))
            per_seed = np.max(np.array(list(base.values())), axis=0)
            for name, ref, label in (
                ("vs_best_fixed", np.array(base[fixed]), fixed),
                ("vs_best_per_seed", per_seed, "per seed"),
            ):
                entry[name][metric] = {"baseline": label, **mean_gap(auto - ref)}
        out.append(entry)
    return out


def _write(pairs: list[dict], args, t0: float, final: bool) -> None:
    both = sum(p["verdict"]["qini_auc"]["matches"] and p["verdict"]["uplift@30"]["matches"] for p in pairs)
    within = sum(
        all(p["verdict"][m]["gap"] >= -p["verdict"][m]["gap_se"] for m in ("qini_auc", "uplift@30"))
        for p in pairs
    )
    mean_gap = {m: float(np.mean([p["verdict"][m]["gap"] for p in pairs])) for m in ("qini_auc",)}
    summary = per_pair_summary(pairs)
    rules = [r for r in NESTED_RULES if all(r in p.get("by_rule", {}) for p in pairs)]
    by_rule = {r: per_pair_summary(pairs, r) for r in rules}
    if final:
        print(
            f"\nauto >= best scikit-uplift model on both metrics: {both}/{len(pairs)} (seed, pair)s; "
            f"within one bootstrap standard error on both: {within}/{len(pairs)}; "
            f"mean Qini gap {mean_gap['qini_auc']:+.4f}\n"
            "mean over seeds, auto minus the best scikit-uplift model (se over seeds):\n"
            f"{'arm':<14}{'outcome':<11}{'qini vs fixed':>22}{'u@30 vs fixed':>22}"
            f"{'qini vs per-seed best':>24}{'u@30 vs per-seed best':>24}"
        )
        for s in summary:
            cells = [
                f"{s[k][m]['gap']:+.4f} ({s[k][m]['se']:.4f})"
                for k in ("vs_best_fixed", "vs_best_per_seed")
                for m in ("qini_auc", "uplift@30")
            ]
            print(f"{s['arm']:<14}{s['outcome']:<11}{cells[0]:>22}{cells[1]:>22}{cells[2]:>24}{cells[3]:>24}")
        if by_rule:
            print(
                "\nper choice rule, mean over seeds of the pick minus the best fixed scikit-uplift model "
                "(qini / uplift@30; `rule` = auto before nested cross-validation):"
            )
            print(f"{'arm':<14}{'outcome':<11}" + "".join(f"{r:>30}" for r in rules))
            for i, s in enumerate(summary):
                cells = [
                    f"{by_rule[r][i]['vs_best_fixed']['qini_auc']['gap']:+.4f} / "
                    f"{by_rule[r][i]['vs_best_fixed']['uplift@30']['gap']:+.4f}"
                    for r in rules
                ]
                print(f"{s['arm']:<14}{s['outcome']:<11}" + "".join(f"{c:>30}" for c in cells))
            print(
                "rules nested cross-validation chose:",
                {r: sum(p.get("rule") == r for p in pairs) for r in rules},
            )
    result = {
        "per_pair": summary,
        "per_pair_by_rule": by_rule,
        "auto_matches_best_fixed_baseline_on_both_by_mean": sum(
            all(s["vs_best_fixed"][m]["gap"] >= -1e-9 for m in ("qini_auc", "uplift@30")) for s in summary
        ),
        "pairs": pairs,
        "auto_matches_best_baseline_on_both": both,
        "auto_within_one_se_on_both": within,
        "n_pairs": len(pairs),
        "seconds": time.perf_counter() - t0,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "args": vars(args),
    }
    # file names only: no machine paths in results
    result["args"] = {k: v.name if isinstance(v, Path) else v for k, v in result["args"].items()}
    if args.merge:  # the runs' own time and arguments, not the merge's
        runs = [json.loads(Path(f).read_text()) for f in args.merge.split(",")]
        result["seconds"] = sum(r["seconds"] for r in runs)
        result["args"] = {"merged": [r["args"] for r in runs]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    if final:
        print(f"wrote {args.out.name} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
