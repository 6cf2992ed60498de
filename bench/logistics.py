"""Benchmark logistics predictions on the generated marketplace: delivery-time calibration, the rate-shopping
rule's promise and cost, and demand forecasts for replenishment.

1. Delivery times: the model is fit on the first 80% of shipments (by order time) and predicts the rest;
   target: the 10%-90% band (an 80% interval) holds 75-85% of held-out deliveries for every partner.
2. Rate shopping on the held-out orders: for each order every partner of its mode is priced (default
   rate cards) and predicted; the rule "cheapest that arrives within N days at 80%" picks one, and the
   order's real delivery time with that partner is drawn from the generator's truth. Targets: the promise
   holds for >= 80% of orders, at a lower cost than always shipping with the (predicted) fastest partner.
3. Demand: daily sales of the 500 products that sold most before the held-out weeks (chosen on training
   data only, as a merchant would), 4 held-out weeks (rolling origin, horizon 7), once on the 4 normal
   weeks before the discount season and once on the last 4 weeks (the season and after), for each of
   `--forecast-seeds` marketplaces. The model is chosen by MASE on a rolling origin over the 2 weeks
   before the held-out ones (training data only); target: its held-out MASE < 1 (scaled by the
   in-sample seasonal naive error, season 7) in both segments and every seed. The discount-season dates
   are a calendar known in advance (exogenous to the models).
Run: .venv/bin/python -m bench.logistics [--scale demo --seed 7 --forecast-seeds 7 11 --forecast-models ...].
Writes bench/results/logistics.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from decimal import Decimal

import numpy as np
import pandas as pd

from bench import write_result
from commerce.logistics import RateCard
from commerce.services.logistics import default_rate_cards, rate_cost
from features.logistics import delivery_features
from features.sales import demand_series
from features.synth.generator import generate_marketplace
from features.synth.logistics import PARTNER_INDEX, PARTNERS, generate_shipments, simulate_delivery_days
from models.forecast import FORECASTERS
from models.logistics import DeliveryTimeModel, ShippingOption, cheapest_within, fastest
from training.evaluate_forecast import evaluate_forecasters

PROMISES = {"bonded": (2, 3, 4), "direct_mail": (6, 8, 10)}
FORECAST_MODELS = ["seasonal_naive", "imapa", "lightgbm", "calendar_level"]
EVENT_COLUMNS = ["ts", "product_id", "event_type", "quantity"]


def _rate_shopping(test: pd.DataFrame, model: DeliveryTimeModel, peaks, seed: int) -> list[dict]:
    cards = {(c["partner_id"], c["zone"]): RateCard(**c) for c in default_rate_cards()}
    rows = []
    rng = np.random.default_rng(seed)
    ordered_us = ((test["ordered_at"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)).to_numpy()
    for mode, promises in PROMISES.items():
        in_mode = (test["mode"] == mode).to_numpy()
        orders = test[in_mode]
        partners = [p.partner_id for p in PARTNERS if p.mode == mode]
        q80, cost, real = {}, {}, {}
        for pid in partners:
            parcels = orders.assign(partner_id=pid)
            q80[pid] = model.predict_quantiles(delivery_features(parcels, peaks))["q80"].to_numpy()
            cost[pid] = np.array(
                [
                    float(rate_cost(cards[(pid, z)], int(w)))
                    for z, w in zip(orders["zone"], orders["weight_g"], strict=True)
                ]
            )
            real[pid] = simulate_delivery_days(
                rng, np.full(len(orders), PARTNER_INDEX[pid]), orders["zone"].to_numpy(), ordered_us[in_mode],
                [(int(a.value // 1000), int(b.value // 1000)) for a, b in peaks],
            )  # fmt: skip
        for max_days in promises:
            chosen_cost, chosen_kept, fast_cost, fast_kept, promised = [], [], [], [], []
            for i in range(len(orders)):
                options = [ShippingOption(pid, Decimal(str(cost[pid][i])), q80[pid][i]) for pid in partners]
                pick, quick = cheapest_within(options, max_days), fastest(options)
                promised.append(pick.promise_days <= max_days)
                chosen_cost.append(cost[pick.key][i])
                chosen_kept.append(real[pick.key][i] <= max_days)
                fast_cost.append(cost[quick.key][i])
                fast_kept.append(real[quick.key][i] <= max_days)
            promised, chosen_kept = np.array(promised), np.array(chosen_kept)
            rows.append(
                {
                    "mode": mode,
                    "max_days": max_days,
                    "orders": len(orders),
                    # the storefront promises N days only where some partner's 80% quantile is within N
                    "promisable_share": float(promised.mean()),
                    "promise_kept": float(chosen_kept[promised].mean()) if promised.any() else None,
                    "all_orders_within_n": float(chosen_kept.mean()),
                    "fastest_promise_kept": float(np.mean(fast_kept)),
                    "cost_vs_fastest": float(np.sum(chosen_cost) / np.sum(fast_cost)),
                    "mean_cost": float(np.mean(chosen_cost)),
                    "fastest_mean_cost": float(np.mean(fast_cost)),
                }
            )
    return rows


def _demand_forecasts(
    events: pd.DataFrame, seasons: pd.DataFrame, top_products: int, models: list[str]
) -> dict:
    """Both segments of one marketplace: every model's held-out scores and the one chosen on training data."""
    peaks = list(zip(seasons["start"], seasons["end"], strict=True))
    models = list(dict.fromkeys(["seasonal_naive", *models]))  # the baseline every score is compared to
    buys = events[events["event_type"] == "purchase"].rename(columns={"product_id": "item_id"})
    buys = buys[["item_id", "ts", "quantity"]]
    # normal weeks: the 4 weeks before the discount season; season weeks: the last 4 (season and after),
    # which no history of this marketplace has seen before (the calendar flag is all the models know)
    out = {}
    for label, until in (
        ("normal_weeks", seasons["start"].min()),
        ("season_weeks", buys["ts"].max() + pd.Timedelta(1, "s")),
    ):
        sales = buys[buys["ts"] < until]
        held_out = np.sort(demand_series(sales, "D")["ds"].unique())[-4 * 7]
        # the products to forecast are the best sellers before the held-out weeks: choosing them by their
        # held-out sales would pick the ones that happened to sell well there (a peek at the test)
        before = sales[sales["ts"].dt.tz_convert("UTC").dt.tz_localize(None) < held_out]
        top = before.groupby("item_id")["quantity"].sum().nlargest(top_products).index
        series = demand_series(sales[sales["item_id"].isin(top)], "D")
        # the model is chosen on a rolling origin inside the training data (2 weeks before the held-out
        # ones), then every model is scored on the 4 held-out weeks
        choice, _ = evaluate_forecasters(
            series[series["ds"] < held_out], models, freq="D", horizon=7, n_windows=2,
            event_windows=peaks,
        )  # fmt: skip
        selected = min(choice, key=lambda r: r["mase"])["model"]
        rows, summary = evaluate_forecasters(
            series, models, freq="D", horizon=7, n_windows=4, event_windows=peaks
        )
        selected_mase = next(r["mase"] for r in rows if r["model"] == selected)
        out[label] = {
            "until": str(until),
            **summary,
            "rows": rows,
            "selection": {r["model"]: r["mase"] for r in choice},
            "selected": selected,
            "selected_mase": selected_mase,
            "selected_vs_seasonal_naive": selected_mase
            / next(r["mase"] for r in rows if r["model"] == "seasonal_naive"),
            "target": "the model chosen on training data has mase < 1 (in-sample seasonal naive scale)",
            "met": selected_mase < 1,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="demo")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--top-products", type=int, default=500)
    parser.add_argument("--forecast-seeds", type=int, nargs="+", default=[7, 11])
    parser.add_argument("--forecast-models", nargs="+", default=FORECAST_MODELS, choices=FORECASTERS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        tmp = f"{work}/market"  # generated as a link inside `work`, removed with it
        generate_marketplace(tmp, args.scale, seed=args.seed)
        generate_shipments(tmp, seed=args.seed)
        shipments = pd.read_parquet(f"{tmp}/shipments.parquet")
        seasons = pd.read_parquet(f"{tmp}/seasons.parquet")
        events = pd.read_parquet(f"{tmp}/events", columns=EVENT_COLUMNS)
    peaks = list(zip(seasons["start"], seasons["end"], strict=True))

    cut = shipments["ordered_at"].quantile(0.8)
    train, test = shipments[shipments["ordered_at"] < cut], shipments[shipments["ordered_at"] >= cut]
    started = time.perf_counter()
    model = DeliveryTimeModel(random_state=args.seed).fit(
        delivery_features(train, peaks), train["delivery_days"]
    )
    fit_seconds = time.perf_counter() - started
    pred = model.predict_quantiles(delivery_features(test, peaks))
    actual = test["delivery_days"].to_numpy()
    inside = pd.Series((actual >= pred["q10"].to_numpy()) & (actual <= pred["q90"].to_numpy()))
    within_q80 = pd.Series(actual <= pred["q80"].to_numpy())
    partner = test["partner_id"].to_numpy()
    coverage = [
        {
            "partner_id": pid,
            "deliveries": int((partner == pid).sum()),
            "coverage_80_interval": float(inside[partner == pid].mean()),
            "share_within_q80": float(within_q80[partner == pid].mean()),
            "median_days": float(np.median(actual[partner == pid])),
        }
        for pid in sorted(set(partner))
    ]
    shopping = _rate_shopping(test, model, peaks, args.seed)

    forecasts = {
        f"seed_{args.seed}": _demand_forecasts(events, seasons, args.top_products, args.forecast_models)
    }
    for seed in args.forecast_seeds:
        if seed != args.seed:
            with tempfile.TemporaryDirectory() as work:
                tmp = f"{work}/market"  # generated as a link inside `work`, removed with it
                generate_marketplace(tmp, args.scale, seed=seed)
                other = pd.read_parquet(f"{tmp}/events", columns=EVENT_COLUMNS)
                other_seasons = pd.read_parquet(f"{tmp}/seasons.parquet")
            forecasts[f"seed_{seed}"] = _demand_forecasts(
                other, other_seasons, args.top_products, args.forecast_models
            )

    print(f"delivery model fit on {len(train)} shipments in {fit_seconds:.1f} s; {len(test)} held out")
    print(f"{'partner':>16} {'n':>6} {'cover80':>8} {'<=q80':>7} {'median d':>9}")
    for row in coverage:
        print(
            f"{row['partner_id']:>16} {row['deliveries']:>6} {row['coverage_80_interval']:>8.3f}"
            f" {row['share_within_q80']:>7.3f} {row['median_days']:>9.2f}"
        )
    header = f"{'mode':>12} {'N days':>6} {'promisable':>10} {'kept':>6}"
    print(f"\n{header} {'fastest kept':>12} {'cost/fastest':>12}")
    for row in shopping:
        kept = "-" if row["promise_kept"] is None else f"{row['promise_kept']:.3f}"
        print(
            f"{row['mode']:>12} {row['max_days']:>6} {row['promisable_share']:>10.3f} {kept:>6}"
            f" {row['fastest_promise_kept']:>12.3f} {row['cost_vs_fastest']:>12.3f}"
        )
    for seed_label, segments in forecasts.items():
        for label, block in segments.items():
            print(
                f"\ndemand forecast ({seed_label}, {label}), {block['n_series']} products, 4 held-out weeks:"
            )
            print(f"  chosen on the 2 training weeks before them: {block['selected']}")
            for row in block["rows"]:
                scores = f"mase {row['mase']:.3f} smape {row['smape']:.1f} cover80 {row['coverage@80']:.3f}"
                print(f"{row['model']:>16} {scores}")
    result = {
        "scale": args.scale,
        "seed": args.seed,
        "delivery": {
            "train_shipments": len(train),
            "test_shipments": len(test),
            "fit_seconds": round(fit_seconds, 2),
            "per_partner": coverage,
            "target": "coverage_80_interval in [0.75, 0.85] for every partner",
            "met": all(0.75 <= r["coverage_80_interval"] <= 0.85 for r in coverage),
        },
        "rate_shopping": {
            "rows": shopping,
            "target": "promise_kept >= 0.80 where promised; cost_vs_fastest <= 1",
            "met": all(r["promise_kept"] is None or r["promise_kept"] >= 0.8 for r in shopping)
            and all(r["cost_vs_fastest"] <= 1 for r in shopping),
        },
        "demand_forecast": {
            "models": args.forecast_models,
            **forecasts,
            "met": all(block["met"] for segments in forecasts.values() for block in segments.values()),
        },
    }
    write_result("logistics", result)


if __name__ == "__main__":
    main()
