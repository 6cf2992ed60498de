"""Harder generated data for the repeat and session benches, shaped after what the public sets do that
the default generators do not (only the benches use these; the product generators keep their defaults).

Baskets (Instacart, Ta-Feng, Dunnhumby, Online Retail): item popularity Zipf ~1 over a large catalog;
basket sizes and gaps between orders heavy-tailed (log-normal with a wide spread, Pareto gaps); most
shoppers order once or twice (Ta-Feng, Online Retail) and a few order very often; seasonal items and a
drifting assortment (items launched during the log, so the newest baskets hold items never bought
before: cold items); times at day resolution (Ta-Feng has dates only, so one shopper's two orders on a
day share a timestamp), written as a messy CSV like bench.next_basket's.

Clicks (YOOCHOOSE, Diginetica, RetailRocket): features.synth.clickstream with a harder shape (one- and
two-click visits dominate, Zipf ~1 items, a third of clicks repeat an earlier one, a tail of very long
visits, items launched up to the last day), then double clicks (the same item twice at the same second)
and times truncated to whole seconds, so many clicks share a timestamp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DAY = 86_400.0


def write_messy_csv(rows: list[tuple], path: Path, rng: np.random.Generator, seed: int) -> Path:
    """Basket rows (customer, sku, transaction, time) as a real export looks: a quantity column, 1% of
    rows duplicated, shuffled, 0.5% of SKUs missing."""
    frame = pd.DataFrame(rows, columns=["customer", "sku", "transaction", "time"])
    frame["qty"] = rng.integers(1, 4, len(frame))
    messy = frame.sample(frac=0.01, random_state=seed)  # duplicate rows
    frame = pd.concat([frame, messy]).sample(frac=1.0, random_state=seed + 1)
    frame.loc[frame.sample(frac=0.005, random_state=seed + 2).index, "sku"] = None  # missing values
    frame.to_csv(path, index=False)
    return path


def hard_grocery_csv(
    path: Path, n_shoppers: int, n_items: int = 20_000, days: int = 365, seed: int = 0
) -> Path:
    """A purchase log with the shapes listed in the module docstring, as (customer, sku, transaction,
    time as a day-first date, qty)."""
    rng = np.random.default_rng(seed)
    rank = rng.permutation(n_items) + 1.0
    base = rank**-1.0  # Zipf ~1
    late = rng.random(n_items) < 0.25  # a quarter of the items launch during the log
    launch = np.where(late, rng.uniform(0, days, n_items), -1.0)
    seasonal = rng.random(n_items) < 0.3
    phase = rng.uniform(0, 2 * np.pi, n_items)
    category = rng.integers(0, 300, n_items)
    by_category = [np.flatnonzero(category == c) for c in range(300)]
    week_pull = []  # item pull per week: launch, season and a slow drift of every item
    drift = rng.normal(0.0, 0.5, n_items)
    for week in range(days // 7 + 1):
        day = week * 7.0
        pull = base * np.exp(drift * day / days)
        pull = np.where(seasonal, pull * (1.0 + 0.9 * np.sin(2 * np.pi * day / 365.0 + phase)), pull)
        pull = np.where(launch > day, 0.0, pull)
        age = day - np.maximum(launch, 0.0)
        pull = np.where(launch >= 0, pull * (1.0 + 4.0 * np.exp(-age / 30.0)), pull)  # launch buzz
        week_pull.append(np.cumsum(pull / pull.sum()))

    def popular(day: float, size: int) -> np.ndarray:
        cum = week_pull[min(int(day // 7), len(week_pull) - 1)]
        return np.minimum(np.searchsorted(cum, rng.random(size), side="right"), n_items - 1)

    rows = []
    for s in range(n_shoppers):
        # many one-order shoppers, a heavy tail of frequent ones
        n_baskets = 1 if rng.random() < 0.35 else int(np.clip(rng.pareto(1.1) * 2 + 2, 2, 120))
        first = rng.uniform(0, days * 0.9)
        gaps = np.clip(rng.pareto(1.3, n_baskets) * rng.uniform(2, 20), 0.0, 200.0)
        gaps[rng.random(n_baskets) < 0.08] = 0.0  # a second order the same day
        when = first + np.cumsum(gaps) - gaps[0]
        when = when[when < days]
        staples = popular(first, int(rng.integers(1, 12)))
        rate = rng.beta(1.2, 3.0, len(staples))
        liked = rng.choice(300, size=2, replace=False)
        pool = np.concatenate([by_category[c] for c in liked])
        mean_size = rng.lognormal(np.log(6.0), 0.7)
        for b, day in enumerate(when):
            size = int(np.clip(rng.lognormal(np.log(mean_size), 1.0), 1, 200))
            items = staples[rng.random(len(staples)) < rate].tolist()
            n_new = max(size - len(items), 0)
            local = rng.random(n_new) < 0.4
            items += rng.choice(pool, size=int(local.sum())).tolist()
            items += popular(day, int((~local).sum())).tolist()
            if rng.random() < 0.05:  # staples drift too: a shopper switches to a new favourite
                staples[rng.integers(0, len(staples))] = popular(day, 1)[0]
            stamp = (pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(day))).strftime("%d/%m/%Y")
            rows.extend((f"C{s:06d}", f"SKU-{item:05d}", f"T{s:06d}-{b:03d}", stamp) for item in items)
    return write_messy_csv(rows, path, rng, seed)


HARD_SHAPE = dict(
    item_zipf=1.0, topic_zipf=1.0, fade_days=4.0, one_click_share=0.55, long_visit_share=0.06,
    long_visit_extra=0.03, repeat=0.3, successor=0.2, switch=0.12, stray=0.05, mean_gap_seconds=40.0,
)  # fmt: skip


def hard_click_stream(n_sessions: int, n_items: int, days: int = 30, seed: int = 1) -> pd.DataFrame:
    """Clicks (session_id, item_id, ts) with the click shapes listed in the module docstring."""
    from features.synth.clickstream import StreamShape, click_stream

    clicks = click_stream(n_sessions, n_items, days=days, seed=seed, shape=StreamShape(**HARD_SHAPE))
    rng = np.random.default_rng(seed)
    double = clicks[rng.random(len(clicks)) < 0.1]  # double clicks: the same item at the same second
    clicks = pd.concat([clicks, double]).sort_values(["session_id", "ts"], kind="stable")
    clicks["ts"] = np.floor(clicks["ts"].to_numpy())
    order = clicks.groupby("session_id", sort=False)["ts"].transform("min").sort_values(kind="stable").index
    return clicks.loc[order].reset_index(drop=True)


def stream_shape(clicks: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    """What the stream looks like, as bench.sessions reports it, and the share of test clicks on items
    the training part never saw."""
    lengths = clicks.groupby("session_id").size()
    counts, n = clicks["item_id"].value_counts(), len(clicks)
    out = {
        "clicks": n,
        "one_click_visits": round(float((lengths == 1).mean()), 3),
        "two_click_visits": round(float((lengths == 2).mean()), 3),
        "visits_over_50_clicks": round(float((lengths > 50).mean()), 4),
        "longest_visit": int(lengths.max()),
        "repeat_clicks": round(float(clicks.duplicated(["session_id", "item_id"]).mean()), 3),
        "same_second_clicks": round(float(clicks.duplicated(["session_id", "ts"]).mean()), 3),
        "items_clicked_once": round(float((counts == 1).mean()), 3),
        "top_1pct_items_click_share": round(float(counts.iloc[: len(counts) // 100 + 1].sum() / n), 3),
    }
    out["test_clicks_on_new_items"] = round(float((~test["item_id"].isin(set(train["item_id"]))).mean()), 3)
    return out
