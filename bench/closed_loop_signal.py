"""Would a more realistic simulator let the closed loop learn price sensitivity? (issue 16)

    nice .venv/bin/python -m bench.closed_loop_signal [--seed 7] [--budgets 3000,10000]
        [--configs base,base+deal,season+deal,history+deal] [--rounds 8] [--name closed_loop_signal]

(other configurations: season, history, season+history+deal; see CONFIGS)

Two changes of the generator's world, measured here by patching it in this process only (neither is
in the product: both change the generated event log, so adopting either would move every synthetic
benchmark):

- `season`: deal-proneness. The discount season's cart and buy boosts are scaled per shopper by
  price sensitivity over its population mean (the average boost stays about the same), so a
  price-sensitive shopper answers a season discount as they answer a coupon.
- `history`: more randomised history. Eight more weekly platform-wide past campaigns (12 instead of
  4), in weeks the four do not use and outside the season.

and one change of the learner, `deal`: deal-proneness features a marketer computes from the event
log and the sales calendar (never from the truth), added to the closed loop's price features:
`season_cart_lift` and `season_buy_lift` (log of a shopper's carts / purchases in the discount
season over what their season views would give at their own rate off season, shrunk, times the
population's season lift),
`coupon_redeem_rate` (redemptions over coupons received, shrunk toward the population's) and
`discount_purchase_share` (purchases in the season or with a redeemed coupon over purchases, shrunk).

Per configuration (world + features): the correlation of each price and deal feature with the true
price sensitivity, the cross-validated R^2 of the sensitivity from the loop's features, and the
closed loop (`marketing.closed_loop.simulate_loop`, demo scale) at each budget: mean profit / oracle
over rounds 6-8 of every strategy. Configurations and seeds run in any order and any process; each
result is merged into bench/results/NAME.json (configs -> seed -> result) as it is measured (`base`
is the unchanged generator and learner).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import features.synth.campaigns as synth_campaigns
import features.synth.generator as synth_generator
import marketing.closed_loop as closed_loop
from features.campaign_features import PRICE_FEATURES, shopper_price_features
from features.synth import generate_marketplace
from features.synth.campaigns import CampaignSpec, CouponSpec
from features.synth.model import CatalogModel, sigmoid
from features.synth.reference import SEGMENTS
from features.synth.truth import load_truth
from marketing.closed_loop import LOOP_SCALES, STRATEGIES, LoopSettings, load_loop_market, simulate_loop

RESULTS = Path(__file__).parent / "results"
DEAL_FEATURES = ("season_cart_lift", "season_buy_lift", "coupon_redeem_rate", "discount_purchase_share")
PRIOR_WEIGHT = 2.0  # pseudo-events shrinking a shopper's share or rate toward the population's
CONFIGS = {  # name: (worlds, deal features in the learner)
    "base": ((), False),
    "base+deal": ((), True),
    "season": (("season",), False),
    "season+deal": (("season",), True),
    "history": (("history",), False),
    "history+deal": (("history",), True),
    "season+history+deal": (("season", "history"), True),
}
# population mean of the price sensitivity: segment shares x the mean of each segment's beta
_shares = np.array([s[0] for s in SEGMENTS.values()])
MEAN_SENSITIVITY = float(
    (_shares / _shares.sum()) @ np.array([a / (a + b) for _, _, (a, b) in SEGMENTS.values()])
)
# eight more weekly platform-wide campaigns, in weeks the generator's four leave free and before or
# after the discount season (days 91-103)
EXTRA_CAMPAIGNS = tuple(
    CampaignSpec(
        f"CMP{i + 5:02d}",
        f"Weekly offer {i + 1}",
        "site",
        start,
        start + 7,
        0.4,
        (
            CouponSpec(f"CPN{i + 5:02d}01", "amount_off", a_value, None, a_min),
            CouponSpec(f"CPN{i + 5:02d}02", "percent_off", p_value, p_cap, 0.0),
        ),
    )
    for i, (start, a_value, a_min, p_value, p_cap) in enumerate(
        [
            (3, 20.0, 99.0, 0.10, 50.0),
            (10, 30.0, 199.0, 0.15, 60.0),
            (28, 10.0, 99.0, 0.08, 40.0),
            (38, 50.0, 299.0, 0.12, 80.0),
            (45, 20.0, 149.0, 0.10, 60.0),
            (63, 30.0, 199.0, 0.20, 100.0),
            (84, 10.0, 99.0, 0.12, 50.0),
            (104, 50.0, 299.0, 0.15, 80.0),
        ]
    )
)


@contextlib.contextmanager
def season_by_sensitivity():
    """The season's cart and buy boosts x price sensitivity / its population mean.

    `organic_events` asks for a view's cart chance with the viewer's sensitivity and then for the buy
    chance of the same views, in the same order; the buy chance takes the sensitivities of that call."""
    cart, buy = CatalogModel.cart_probability, CatalogModel.buy_probability
    last = {}

    def cart_probability(self, activity, price_sensitivity, products, in_season, params):
        ps = np.asarray(price_sensitivity, dtype=np.float64)
        last["ps"] = ps
        season = np.asarray(in_season, dtype=np.float64) * (ps / MEAN_SENSITIVITY - 1.0)
        p = cart(self, activity, ps, products, in_season, params)
        return sigmoid(np.log(p) - np.log1p(-p) + params.season_cart_boost * season)

    def buy_probability(in_season, params):
        season = np.asarray(in_season, dtype=np.float64)
        if last.get("ps") is None or last["ps"].shape != season.shape:
            raise RuntimeError("buy chance asked for views other than the last cart chance's")
        ps = last.pop("ps")
        return sigmoid(params.buy_intercept + params.season_buy_boost * season * ps / MEAN_SENSITIVITY)

    CatalogModel.cart_probability, CatalogModel.buy_probability = (
        cart_probability,
        staticmethod(buy_probability),
    )
    try:
        yield
    finally:
        CatalogModel.cart_probability, CatalogModel.buy_probability = cart, staticmethod(buy)


@contextlib.contextmanager
def more_campaigns():
    """The generator's four past campaigns plus EXTRA_CAMPAIGNS, run in time order."""
    saved = synth_campaigns.CAMPAIGNS, synth_campaigns.ALL_COUPONS
    camps = tuple(sorted(saved[0] + EXTRA_CAMPAIGNS, key=lambda c: c.start_day))
    coupons = tuple(c for camp in camps for c in camp.coupons)
    for mod in (synth_campaigns, synth_generator):
        mod.CAMPAIGNS, mod.ALL_COUPONS = camps, coupons
    try:
        yield
    finally:
        for mod in (synth_campaigns, synth_generator):
            mod.CAMPAIGNS, mod.ALL_COUPONS = saved


def deal_features(events: pd.DataFrame, shopper_ids, as_of, season: tuple) -> pd.DataFrame:
    """DEAL_FEATURES per shopper from `events` (ts, shopper_id, event_type) before `as_of` and the
    discount season [season[0], season[1])."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of
    ts = pd.to_datetime(events["ts"], utc=True)
    past = events[(ts < as_of).to_numpy()]
    in_season = ((ts >= season[0]) & (ts < season[1]))[(ts < as_of).to_numpy()].to_numpy()
    counts = (
        pd.DataFrame(
            {"shopper_id": past["shopper_id"].to_numpy(), "t": past["event_type"].to_numpy(), "s": in_season}
        )
        .groupby(["shopper_id", "t", "s"])
        .size()
        .unstack(["t", "s"], fill_value=0)
    )
    index = pd.Index(np.asarray(shopper_ids, dtype=object), name="shopper_id")
    counts = counts.reindex(index, fill_value=0)

    def n(etype, season_only=None):
        cols = [c for c in counts.columns if c[0] == etype and (season_only is None or c[1] == season_only)]
        return counts[cols].sum(axis=1).astype(float) if cols else pd.Series(0.0, index=index)

    def shrunk(hits, total):
        pop = hits.sum() / max(total.sum(), 1.0)
        return (hits + PRIOR_WEIGHT * pop) / (total + PRIOR_WEIGHT)

    out = pd.DataFrame(index=index)
    for etype, name in (("cart", "season_cart_lift"), ("purchase", "season_buy_lift")):
        # observed over expected in the season: the season's views at the shopper's own rate off
        # season (shrunk) times the population's season lift; no season views (a campaign before
        # the season): 0
        hits_in, hits_out = n(etype, True), n(etype, False)
        views_in, views_out = n("view", True), n("view", False)
        pop_in = hits_in.sum() / max(views_in.sum(), 1.0)
        pop_out = max(hits_out.sum() / max(views_out.sum(), 1.0), 1e-9)
        rate_out = (hits_out + PRIOR_WEIGHT * pop_out) / (views_out + PRIOR_WEIGHT)
        expected = views_in * rate_out * pop_in / pop_out
        out[name] = np.log((hits_in + PRIOR_WEIGHT) / (expected + PRIOR_WEIGHT))
    out["coupon_redeem_rate"] = shrunk(n("coupon_redeem"), n("coupon_grant"))
    out["discount_purchase_share"] = shrunk(
        np.minimum(n("purchase", True) + n("coupon_redeem"), n("purchase")), n("purchase")
    )
    return out


def _price_and_deal(season):
    def features(events, products, shopper_ids, as_of):
        return pd.concat(
            [
                shopper_price_features(events, products, shopper_ids, as_of),
                deal_features(events, shopper_ids, as_of, season),
            ],
            axis=1,
        )

    return features


def _signal(market, truth) -> dict:
    """How well the loop's features show the true price sensitivity (the truth no learner sees)."""
    from lightgbm import LGBMRegressor
    from sklearn.model_selection import cross_val_predict

    ps = truth.tastes.price_sensitivity[truth.shopper_rows(market.shopper_ids)]
    X = market.features
    corr = {c: round(float(np.corrcoef(X[c], ps)[0, 1]), 3) for c in [*PRICE_FEATURES, *DEAL_FEATURES]}

    def r2(cols):
        model = LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15, verbose=-1, n_jobs=1)
        pred = cross_val_predict(model, X[cols], ps, cv=3)
        return round(float(1 - np.mean((ps - pred) ** 2) / np.var(ps)), 3)

    no_deal = [c for c in X.columns if c not in DEAL_FEATURES]
    return {
        "corr_with_sensitivity": corr,
        "r2_without_deal": r2(no_deal),
        "r2_with_deal": r2(list(X.columns)),
    }


def _without_deal(market):
    drop = [c for c in DEAL_FEATURES if c in market.features.columns]
    market.features = market.features.drop(columns=drop)
    market.past = market.past.drop(columns=drop)
    return market


def run_config(name: str, seed: int, budgets: list[float], rounds: int, scale: str) -> dict:
    worlds, deal = CONFIGS[name]
    out = {"worlds": list(worlds), "deal_features": deal, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="loop-signal-") as work, contextlib.ExitStack() as stack:
        tmp = f"{work}/market"  # generated as a link inside `work`, removed with it
        if "season" in worlds:
            stack.enter_context(season_by_sensitivity())
        if "history" in worlds:
            stack.enter_context(more_campaigns())
        t0 = time.process_time()
        generate_marketplace(tmp, scale=LOOP_SCALES[scale], seed=seed)
        sea = pd.read_parquet(Path(tmp) / "seasons.parquet").iloc[0]
        saved = closed_loop.shopper_price_features
        closed_loop.shopper_price_features = _price_and_deal((sea["start"], sea["end"]))
        try:
            settings = LoopSettings(rounds=rounds, seed=seed)
            market = load_loop_market(tmp, settings.coupons, settings.margin_rate, seed=seed)
        finally:
            closed_loop.shopper_price_features = saved
        truth = load_truth(tmp)
        out["signal"] = _signal(market, truth)
        out["past_rows"] = int(len(market.past))
        out["past_treated_rows_per_shopper"] = round(
            float((market.past["arm"] != "control").sum() / len(market.shopper_ids)), 2
        )
        if not deal:
            market = _without_deal(market)
        out["setup_cpu_seconds"] = round(time.process_time() - t0, 1)
        print(name, json.dumps(out), flush=True)
        for budget in budgets:
            t0 = time.process_time()
            rows = pd.DataFrame(simulate_loop(market, LoopSettings(rounds=rounds, budget=budget, seed=seed)))
            late = rows[rows["round"] >= 6]
            out["runs"][f"{budget:.0f}"] = {
                "mean_vs_oracle_from_round_6": late.groupby("strategy")["profit_vs_oracle"]
                .mean()
                .round(3)
                .to_dict(),
                "closed_loop_by_round": rows[rows["strategy"] == "closed_loop"]
                .set_index("round")["profit_vs_oracle"]
                .round(3)
                .to_dict(),
                "closed_loop_uplift_corr_round_8": round(
                    float(
                        rows.loc[
                            (rows["strategy"] == "closed_loop") & (rows["round"] == rounds), "uplift_corr"
                        ].iloc[0]
                    ),
                    3,
                ),
                "cpu_seconds": round(time.process_time() - t0, 1),
            }
            print(name, budget, json.dumps(out["runs"][f"{budget:.0f}"]), flush=True)
    return out


def table(result: dict) -> str:
    """Mean profit / oracle over rounds 6-8 per configuration, seed, budget and strategy, and the
    change of the closed loop against `base` (the unchanged generator and learner) of the same seed."""
    lines = [
        "config | seed | budget | " + " | ".join(STRATEGIES) + " | closed loop - base | R^2 of sensitivity"
    ]
    for name, seeds in result["configs"].items():
        for seed, c in seeds.items():
            base = result["configs"].get("base", {}).get(seed, {}).get("runs", {})
            r2 = c["signal"]["r2_with_deal" if c["deal_features"] else "r2_without_deal"]
            for budget, run in c["runs"].items():
                m = run["mean_vs_oracle_from_round_6"]
                ref = base.get(budget, {}).get("mean_vs_oracle_from_round_6", {}).get("closed_loop")
                gain = "" if ref is None else f"{m['closed_loop'] - ref:+.3f}"
                lines.append(
                    f"{name} | {seed} | {budget} | "
                    + " | ".join(f"{m.get(s, float('nan')):.3f}" for s in STRATEGIES)
                    + f" | {gain} | {r2}"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="demo", choices=sorted(LOOP_SCALES))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--budgets", default="3000,10000")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--configs", default="base,base+deal,season+deal,history+deal")
    ap.add_argument("--name", default="closed_loop_signal", help="results file stem in bench/results/")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    path = RESULTS / f"{args.name}.json"
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
        measured = run_config(
            name, args.seed, [float(b) for b in args.budgets.split(",")], args.rounds, args.scale
        )
        # merge into what other processes wrote meanwhile
        result = json.loads(path.read_text()) if path.exists() else {}
        result.update({"scale": args.scale, "rounds": args.rounds})
        result.setdefault("configs", {}).setdefault(name, {})[str(args.seed)] = measured
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(table(result), flush=True)


if __name__ == "__main__":
    main()
