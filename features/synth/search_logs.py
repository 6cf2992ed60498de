"""Search logs for a generated marketplace: what each search showed, in which positions, and what the
shopper clicked, carted and bought, with position bias.

Reads a `generate_marketplace` output (products, the search events, and the truth tables) and writes
`search_logs.parquet` next to it (whole or not at all: `commerce.files.atomic_path`). Deterministic for a
seed.

- Queries: each search event names a leaf category or a brand; half the category queries are typed in
  Chinese (the leaf's Chinese name), the rest in English.
- Candidates: the production retrieval (commerce.search, FTS5 + query parser) returns up to `pool`
  matches.
- Logging policy: what the platform served before a learned ranker, its organic order
  (`ParsedQuery.organic_scores`: BM25 plus the named brand / category boosts), top `page`. It knows
  nothing of the shopper or of popularity, so what it puts on top is largely unrelated to what a shopper
  wants: the situation in which clicks from production traffic mislead a learner.
- Randomized slice (`randomized_share` of searches, RandTop-k with k = `page`): the same page in a
  uniformly random order. Positions are then independent of the results, so click rate by position
  measures position bias without a model; the interventions cost little because only the order changes.
- Behaviour (position-based model): position k is examined with probability 1 / k**eta; an examined
  result is clicked with probability sigmoid(attraction), where attraction is the shopper's true utility
  for the product (the generator's choice model: latent taste x brand, origin affinity, price
  sensitivity x brand price level, product popularity); a click becomes a cart and a purchase with the
  generator's funnel probabilities. With `trust_bias` > 0 shoppers also trust the order: an examined
  result at position k is clicked regardless of attraction with probability trust_bias / k (trust bias,
  Agarwal et al. 2019), which position-based IPW does not model; off by default, a stress test.
- Truth: each shown row also carries `true_attraction`, the simulator's click probability once examined
  (sigmoid(ATTRACTION_INTERCEPT + utility)), and `true_examination`, the probability its position was
  seen. Neither is a feature or a label; the evaluation grades rankers against the first and the
  propensity estimate against the second ("models are checked against truth").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from commerce.files import atomic_path
from commerce.inputs import marketplace_dir
from commerce.search.index import Fts5Index, SearchDocument
from commerce.search.lexicon import CATEGORY_ZH
from commerce.search.query import QueryParser, Vocabulary
from features.synth.model import ModelParams, sigmoid

SEARCH_LOGS = "search_logs.parquet"
ATTRACTION_INTERCEPT = -1.0
CHINESE_SHARE = 0.5


def product_documents(data_dir: Path) -> list[SearchDocument]:
    """The generated products as search documents (category path from categories.parquet)."""
    products = pq.read_table(data_dir / "products.parquet").to_pandas()
    cats = pq.read_table(data_dir / "categories.parquet").to_pandas()
    name = dict(zip(cats["category_id"], cats["name"], strict=True))
    parent = dict(zip(cats["category_id"], cats["parent_id"], strict=True))

    def path(cid: str) -> tuple[str, ...]:
        out = []
        while cid is not None and cid in name:
            out.append(name[cid])
            cid = parent[cid]
        return tuple(reversed(out))

    paths = {c: path(c) for c in name}
    return [
        SearchDocument(
            product_id=r.product_id,
            title=r.title,
            brand=r.brand,
            category_id=r.category_id,
            category_path=paths[r.category_id],
            origin=r.origin_country,
            merchant_id=r.merchant_id,
            price=str(r.price),
            fulfillment=r.fulfillment,
            created_at=pd.Timestamp(r.created_at).isoformat(),
            attributes=("bonded" if r.fulfillment == "bonded" else "direct mail",),
        )
        for r in products.itertuples(index=False)
    ]


class QueryEngine:
    """Production retrieval over the generated catalogue, memoised per query text."""

    def __init__(self, docs: list[SearchDocument], pool: int):
        self.index = Fts5Index()
        self.index.upsert(docs)
        self.parser = QueryParser(Vocabulary.from_documents(docs))
        self.pool = pool
        self._cache: dict[str, tuple] = {}

    def run(self, text: str) -> tuple:
        """(parsed query, hits in BM25 order with field scores)."""
        if text not in self._cache:
            parsed = self.parser.parse(text)
            hits = self.index.match(parsed.match, self.pool, field_scores=True)
            if not hits and len(parsed.match.groups) > 1:
                hits = self.index.match(parsed.relaxed(), self.pool, field_scores=True)
            self._cache[text] = (parsed, hits)
        return self._cache[text]


def _truth(data_dir: Path):
    tastes = pq.read_table(data_dir / "truth" / "tastes.parquet").to_pandas()
    brands = pq.read_table(data_dir / "truth" / "brands.parquet").to_pandas()
    ptruth = pq.read_table(data_dir / "truth" / "products.parquet").to_pandas()
    order = json.loads((data_dir / "truth" / "categories_order.json").read_text())
    params = ModelParams(**json.loads((data_dir / "truth" / "model.json").read_text())["params"])
    return tastes, brands, ptruth, order["origins"], params


def simulate_search_logs(
    data_dir: str | Path,
    *,
    seed: int = 0,
    randomized_share: float = 0.1,
    page: int = 10,
    pool: int = 50,
    eta: float = 1.0,
    trust_bias: float = 0.0,
    max_searches: int | None = None,
) -> pd.DataFrame:
    """Simulate and write `search_logs.parquet`; returns the log (one row per shown result)."""
    data_dir = marketplace_dir(data_dir)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(17,)))
    events = pq.read_table(
        data_dir / "events",
        columns=["ts", "shopper_id", "event_type", "query"],
        filters=[("event_type", "=", "search")],
    ).to_pandas()
    events = events.sort_values(["ts", "shopper_id"], kind="stable").reset_index(drop=True)
    if max_searches is not None:
        events = events.iloc[:max_searches]
    docs = product_documents(data_dir)
    engine = QueryEngine(docs, pool)
    tastes, brands, ptruth, origins, params = _truth(data_dir)

    # Per-product truth arrays, aligned on the product ids of `docs`.
    pid_index = {d.product_id: i for i, d in enumerate(docs)}
    brand_row = {b: i for i, b in enumerate(brands["brand"])}
    p_brand = np.array([brand_row[d.brand] for d in docs])
    brand_latent = np.stack(brands["latent"].to_numpy()).astype(np.float64)
    brand_origin = np.array([origins.index(o) for o in brands["origin_country"]])
    pt = ptruth.set_index("product_id").loc[[d.product_id for d in docs]]
    log_pop = np.log(pt["popularity"].to_numpy() / pt["popularity"].mean())
    rel_price = pt["rel_price"].to_numpy()
    shopper_row = {s: i for i, s in enumerate(tastes["shopper_id"])}
    latent = np.stack(tastes["latent"].to_numpy()).astype(np.float64)
    origin_aff = np.stack(tastes["origin_affinity"].to_numpy()).astype(np.float64)
    loyalty = tastes["brand_loyalty"].to_numpy()
    sensitivity = tastes["price_sensitivity"].to_numpy()
    activity = tastes["activity"].to_numpy()

    leaf_names = set(CATEGORY_ZH)
    chinese = rng.random(len(events)) < CHINESE_SHARE
    queries = [
        CATEGORY_ZH[q] if q in leaf_names and zh else q
        for q, zh in zip(events["query"].astype(str), chinese, strict=True)
    ]
    randomized = rng.random(len(events)) < randomized_share
    examine = 1.0 / np.arange(1, page + 1) ** eta
    rows: dict[str, list] = {
        k: []
        for k in (
            "search_id", "shopper_id", "ts", "query", "randomized", "position", "product_id",
            "clicked", "carted", "purchased", "true_attraction", "true_examination",
        )
    }  # fmt: skip
    for i, (shopper, ts, text) in enumerate(zip(events["shopper_id"], events["ts"], queries, strict=True)):
        parsed, hits = engine.run(text)
        if not hits or shopper not in shopper_row:
            continue
        cand = np.array([pid_index[h.product_id] for h in hits])
        shown = cand[np.argsort(-parsed.organic_scores(hits), kind="stable")][:page]
        if randomized[i]:
            shown = rng.permutation(shown)
        u = shopper_row[shopper]
        b = p_brand[shown]
        utility = (
            params.beta_latent * (0.5 + loyalty[u]) * (brand_latent[b] @ latent[u])
            + params.beta_origin * np.log(np.maximum(origin_aff[u, brand_origin[b]] * len(origins), 1e-3))
            - params.beta_price * sensitivity[u] * rel_price[shown]
            + 0.5 * log_pop[shown]
        )
        n = len(shown)
        attraction = sigmoid(ATTRACTION_INTERCEPT + utility)
        trusted = trust_bias / np.arange(1, n + 1)
        clicked = rng.random(n) < examine[:n] * (attraction + (1.0 - attraction) * trusted)
        p_cart = sigmoid(
            params.cart_intercept
            + params.cart_activity * np.log(activity[u])
            - params.cart_price * sensitivity[u] * rel_price[shown]
        )
        carted = clicked & (rng.random(n) < p_cart)
        purchased = carted & (rng.random(n) < sigmoid(np.full(n, params.buy_intercept)))
        rows["search_id"] += [i] * n
        rows["shopper_id"] += [shopper] * n
        rows["ts"] += [ts] * n
        rows["query"] += [text] * n
        rows["randomized"] += [bool(randomized[i])] * n
        rows["position"] += list(range(1, n + 1))
        rows["product_id"] += [docs[j].product_id for j in shown]
        rows["clicked"] += clicked.tolist()
        rows["carted"] += carted.tolist()
        rows["purchased"] += purchased.tolist()
        rows["true_attraction"] += attraction.tolist()
        rows["true_examination"] += examine[:n].tolist()
    log = pd.DataFrame(rows)
    with atomic_path(data_dir / SEARCH_LOGS) as tmp:  # a failed write leaves the previous log whole
        log.to_parquet(tmp, index=False)
    return log
