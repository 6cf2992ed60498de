"""Next-basket evaluation (Li et al., "A Next Basket Recommendation Reality Check", TOIS 2023).

Protocol (`last-basket:SHARE:SEED`): a shopper's baskets are ordered by time (their first event),
then by basket id (numerically when every id is a number), which alone orders them when the data
has no times. Shoppers with at least two baskets are eligible; a random SHARE of them are test
shoppers. A test shopper's last basket is the target and everything before it is history; every
other shopper's baskets are all training data (they shape popularity and neighbours). Models are
fitted on all history and asked for k items per test shopper with past items allowed, and are
scored on every test shopper (`experiments.repeat_metrics.basket_metrics`).

Real baskets are messy: an item listed twice in one basket counts once, rows with a negative or zero
value (returns, Dunnhumby's zero-quantity lines) are not purchases and are left out, and target items
never seen in training stay in the target (they count against recall like any miss).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.repeat_metrics import basket_metrics
from features.interactions import InteractionData, build_interactions
from features.loaders import clean_events, load_events, load_order_lines
from models.recommenders.base import Recommender
from training.evaluate_recommender import Dataset, make_model


@dataclass(frozen=True)
class NextBasketSetup:
    """Training interactions (with `basket_id` / `basket_seq` on their events), each test shopper's
    target basket and the items of their history."""

    train: InteractionData
    targets: dict[str, set[str]]
    history: dict[str, set[str]]
    n_shoppers: int
    n_eligible: int
    n_baskets: int
    n_not_purchases: int  # rows left out for a zero or negative value


def load_basket_data(
    spec: str,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    basket_col: str | None = None,
    time_col: str | None = None,
    time_format: str | None = None,
    value_col: str | None = None,
    orders: str | None = None,
) -> Dataset:
    """`events:FILE` (needs the user, item and basket columns) or `synthetic:DIR` (the generated
    marketplace's purchases; a basket is one checkout session). With `orders` (a file with one row per
    basket), FILE holds order lines and the shopper and time come from `orders`, joined on the basket
    column (`features.loaders.load_order_lines`: Instacart)."""
    kind, sep, location = spec.partition(":")
    if not sep or kind not in ("events", "synthetic") or not location:
        raise ValueError(f"bad data spec {spec!r}; expected events:FILE or synthetic:DIR")
    path = Path(location)
    if kind == "events":
        if not (user_col and item_col and basket_col):
            raise ValueError("events:FILE needs --user-col, --item-col and --basket-col")
        columns = dict(
            user_col=user_col, item_col=item_col, basket_col=basket_col, time_col=time_col,
            time_format=time_format, value_col=value_col,
        )  # fmt: skip
        if orders:
            return Dataset(*load_order_lines(path, orders, **columns))
        return Dataset(*load_events(path, **columns))
    if orders:
        raise ValueError("an orders file goes with events:FILE (order lines), not synthetic:DIR")
    if not (path / "events").is_dir():
        raise FileNotFoundError(f"{path} is not a generated marketplace (no events/ directory)")
    raw = pd.read_parquet(
        path / "events", columns=["shopper_id", "product_id", "ts", "event_type", "quantity", "session_id"]
    )
    events, report = clean_events(
        raw[raw["event_type"] == "purchase"], source=str(path / "events"), user_col="shopper_id",
        item_col="product_id", time_col="ts", value_col="quantity", basket_col="session_id",
    )  # fmt: skip
    items = pd.read_parquet(path / "products.parquet").set_index("product_id")
    shoppers = pd.read_parquet(path / "shoppers.parquet").set_index("shopper_id")
    return Dataset(events, report, item_features=items, user_features=shoppers)


def order_baskets(events: pd.DataFrame) -> pd.Series:
    """Each row's basket position in the global order (time, then basket id), as `basket_seq`."""
    key = events[["user_id", "basket_id"]].copy()
    key["t"] = events["ts"] if "ts" in events.columns else pd.NaT
    baskets = key.groupby(["user_id", "basket_id"], sort=False, observed=True)["t"].min().reset_index()
    numeric = pd.to_numeric(baskets["basket_id"], errors="coerce")
    id_key = numeric if numeric.notna().all() else baskets["basket_id"]
    baskets["id_key"] = id_key.to_numpy()
    baskets = baskets.sort_values(["t", "id_key", "user_id"], kind="stable", na_position="last")
    baskets["basket_seq"] = np.arange(len(baskets), dtype=np.int64)
    merged = key.merge(
        baskets[["user_id", "basket_id", "basket_seq"]], on=["user_id", "basket_id"], how="left"
    )
    return pd.Series(merged["basket_seq"].to_numpy(), index=events.index, name="basket_seq")


def parse_split(spec: str) -> tuple[float, int]:
    """`last-basket:SHARE:SEED` -> (share, seed); SEED defaults to 42."""
    kind, *args = spec.split(":")
    error = ValueError(f"bad split {spec!r}; expected last-basket:SHARE:SEED with 0 < SHARE <= 1")
    if kind != "last-basket" or len(args) not in (1, 2):
        raise error
    try:
        share, seed = float(args[0]), int(args[1]) if args[1:] else 42
    except ValueError:
        raise error from None
    if not 0.0 < share <= 1.0:
        raise error
    return share, seed


def prepare_next_basket(dataset: Dataset, split: str) -> NextBasketSetup:
    """Order the baskets, pick the test shoppers, and build the history interactions and targets."""
    share, seed = parse_split(split)
    events = dataset.events
    if "basket_id" not in events.columns:
        raise ValueError("next-basket evaluation needs a basket column")
    purchase = events["value"] > 0 if "value" in events.columns else pd.Series(True, index=events.index)
    events = events[purchase]
    if events.empty:
        raise ValueError(f"no usable purchases in {dataset.report.source}")
    events = events.assign(basket_seq=order_baskets(events))
    last = events.groupby("user_id", sort=True)["basket_seq"].agg(["max", "nunique"])
    eligible = last.index[last["nunique"] >= 2].to_numpy()
    if len(eligible) == 0:
        raise ValueError("no shopper has two baskets: nothing to predict")
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(share * len(eligible))))
    test_users = set(rng.choice(eligible, size=n_test, replace=False).tolist())
    is_test = events["user_id"].isin(test_users).to_numpy()
    is_target = is_test & (events["basket_seq"].to_numpy() == events["user_id"].map(last["max"]).to_numpy())
    history, target = events[~is_target], events[is_target]
    train = build_interactions(
        history.drop(columns=["basket_id", "basket_seq"]),
        item_features=dataset.item_features,
        user_features=dataset.user_features,
    )
    train = dataclasses.replace(
        train,
        events=train.events.assign(
            basket_id=history["basket_id"].to_numpy(), basket_seq=history["basket_seq"].to_numpy()
        ),
    )
    own = history[history["user_id"].isin(test_users)]
    return NextBasketSetup(
        train=train,
        targets={u: set(items) for u, items in target.groupby("user_id")["item_id"]},
        history={u: set(items) for u, items in own.groupby("user_id")["item_id"]},
        n_shoppers=len(last),
        n_eligible=len(eligible),
        n_baskets=int(events["basket_seq"].nunique()),
        n_not_purchases=int((~purchase).sum()),
    )


def evaluate_next_basket(
    model: Recommender, setup: NextBasketSetup, k: int = 10, name: str | None = None
) -> dict:
    """Fit on the history, recommend k items (past items allowed) to every test shopper, score them."""
    started = time.perf_counter()
    model.fit(setup.train)
    fit_seconds = time.perf_counter() - started
    users = sorted(setup.targets)
    started = time.perf_counter()
    ranked = model.recommend(users, n=k, exclude_seen=False)
    predict_seconds = time.perf_counter() - started
    if len(ranked) != len(users):
        raise ValueError(
            f"{type(model).__name__}.recommend returned {len(ranked)} lists for {len(users)} users"
        )
    recommended = {u: [item for item, _ in items] for u, items in zip(users, ranked, strict=True)}
    row = {"model": name or getattr(model, "name", type(model).__name__), "k": k}
    row.update(basket_metrics(recommended, setup.targets, setup.history, k))
    row.update(fit_seconds=fit_seconds, predict_seconds=predict_seconds)
    return row


def evaluate_next_basket_models(
    names: Iterable[str],
    setup: NextBasketSetup,
    k: int = 10,
    params: Mapping[str, Mapping[str, object]] | None = None,
) -> Iterator[dict]:
    """One row per model name, yielded as each finishes; every name is checked before any fit."""
    models = [(name, make_model(name, (params or {}).get(name))) for name in names]
    for name, model in models:
        yield evaluate_next_basket(model, setup, k, name=name)
