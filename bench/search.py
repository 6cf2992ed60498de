"""Search: index build time for 100k products, GET /v1/search latency at a fixed rate (auction included),
and the learned ranker against BM25 alone on held-out weeks of search logs.

    .venv/bin/python -m bench.search            # 100k products, 200 rps for 20 s, demo-scale ranking
    .venv/bin/python -m bench.search --quick    # 20k products, 5 s of load, tiny-scale ranking
    .venv/bin/python -m bench.search --ranking-only   # the ranker only; keeps the last latency figures

- Index: the generator's catalogue (bilingual titles) as search documents, segmented with jieba and
  written to an in-memory SQLite FTS5 index and to the API's default in-process index (`MemoryIndex`,
  same BM25 scores); also the PostgreSQL index when CROSSCART_BENCH_POSTGRES_URL is set. Target: <= 30 s
  for 100k products.
- HTTP: the API (uvicorn, one worker) over a SQLite marketplace with those products and 300 keyword
  campaigns, so most queries run the auction; open-loop load as bench/serving.py generates it
  (its load-generator process), /health at the same rate as the baseline. Target: p99 <= 30 ms at 200 rps.
  Each distinct request is sent once before the timed run (the replica's lookup cache is warm: with a
  per-replica index its entries stay until the index changes); the in-process CPU of a request with
  every cache cleared is reported under `http.in_process`, of an uncached parse + match under `index`.
- Ranking: `training.evaluate_search` on generated marketplaces (two seeds): nDCG@10 and MRR of the
  debiased ranker over BM25 alone (target >= 1.15) and over the ranker trained without bias correction
  (> 1, with a 95% interval over queries above 0), on the held-out randomized slice's clicks and against
  the simulator's true attraction; the estimated position propensities next to the simulated ones; and a
  stress run with trust bias in the clicks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
TARGETS = {"index_build_seconds": 30.0, "http_p99_ms": 30.0, "ranker_vs_bm25_ndcg@10": 1.15}


def generator_catalog(n_products: int, seed: int = 5):
    from features.synth.catalog import build_catalog
    from features.synth.timeline import Timeline

    n_brands = max(40, n_products // 50)
    return build_catalog(
        np.random.default_rng(seed), n_products, n_brands, max(20, n_brands // 2), Timeline()
    )


def documents(catalog) -> list:
    from commerce.search.index import SearchDocument

    cats = catalog.categories.to_pandas()
    name = dict(zip(cats["category_id"], cats["name"], strict=True))
    parent = dict(zip(cats["category_id"], cats["parent_id"], strict=True))
    products = catalog.products.to_pandas()
    return [
        SearchDocument(
            product_id=r.product_id,
            title=r.title,
            brand=r.brand,
            category_id=r.category_id,
            category_path=(name[parent[r.category_id]], name[r.category_id]),
            origin=r.origin_country,
            merchant_id=r.merchant_id,
            price=str(r.price),
            fulfillment=r.fulfillment,
            created_at=str(r.created_at),
        )
        for r in products.itertuples(index=False)
    ]


def bench_index(n_products: int) -> dict:
    from commerce.search import analysis
    from commerce.search.index import Fts5Index, PostgresIndex
    from commerce.search.memory import MemoryIndex

    catalog = generator_catalog(n_products)
    docs = documents(catalog)
    analysis.tokens("warm up")  # jieba's dictionary load is start-up cost, not build cost
    analysis._CUT_CACHED[True].cache_clear()
    start, cpu = time.perf_counter(), time.process_time()
    index = Fts5Index()
    index.upsert(docs)
    fts5, fts5_cpu = time.perf_counter() - start, time.process_time() - cpu
    out = {
        "products": n_products,
        "fts5_build_seconds": round(fts5, 2),
        "fts5_build_cpu_seconds": round(fts5_cpu, 2),  # wall time includes waiting for a shared CPU
        "fts5_docs": index.count(),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    out["fts5_uncached_match_ms"] = _match_latency(index, docs)
    analysis._CUT_CACHED[True].cache_clear()
    start, cpu = time.perf_counter(), time.process_time()
    memory = MemoryIndex()  # the API's default index
    memory.upsert(docs)
    out["memory_build_seconds"] = round(time.perf_counter() - start, 2)
    out["memory_build_cpu_seconds"] = round(time.process_time() - cpu, 2)
    out["memory_uncached_match_ms"] = _match_latency(memory, docs)
    pg_url = os.environ.get("CROSSCART_BENCH_POSTGRES_URL")
    if pg_url:
        from sqlalchemy import text

        from commerce.db import make_engine

        engine = make_engine(pg_url)
        pg = PostgresIndex(engine, table="bench_search_documents")
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS bench_search_documents"))
        pg.ensure()
        start = time.perf_counter()
        for i in range(0, len(docs), 5_000):
            pg.upsert(docs[i : i + 5_000])
        out["postgresql_build_seconds"] = round(time.perf_counter() - start, 2)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE bench_search_documents"))
        engine.dispose()
    return out


def _match_latency(index, docs) -> dict:
    """Parse + match (100 candidates) per query, without the API's cache: the cost of a cache miss."""
    from commerce.search.lexicon import CATEGORY_ZH
    from commerce.search.query import QueryParser, Vocabulary

    parser = QueryParser(Vocabulary.from_documents(docs))
    leaves = sorted({d.category_path[-1] for d in docs})
    brands = sorted({d.brand for d in docs})[:50]
    queries = leaves + [CATEGORY_ZH[x] for x in leaves] + [f"日本 {CATEGORY_ZH[x]}" for x in leaves] + brands
    ms = []
    cpu = time.process_time()
    for q in queries * 3:
        start = time.perf_counter()
        index.match(parser.parse(q).match, 100)
        ms.append((time.perf_counter() - start) * 1000)
    return {
        "queries": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "cpu_ms_mean": round((time.process_time() - cpu) / len(ms) * 1000, 3),
    }


# ---------------------------------------------------------------- HTTP


def build_database(path: Path, n_products: int, n_campaigns: int) -> tuple[str, list[str]]:
    """A SQLite marketplace with the generator's catalogue, stock and keyword campaigns; returns a
    storefront key and the query texts to send."""
    from decimal import Decimal

    from sqlalchemy import insert

    import commerce.all_models  # noqa: F401
    from commerce.catalog import Category, Product, Stock
    from commerce.db import Base, make_engine, make_session_factory, transaction
    from commerce.importer import LOCATIONS
    from commerce.merchants import Merchant
    from commerce.search.lexicon import CATEGORY_ZH
    from commerce.services import ads
    from commerce.services.access import create_api_key
    from commerce.services.logistics import seed_default_partners

    catalog = generator_catalog(n_products)
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    products = catalog.products.to_pandas()
    cats = catalog.categories.to_pandas()
    merchants = catalog.merchants.to_pandas()
    with transaction(factory) as s:
        s.execute(
            insert(Category.__table__),
            [
                {"category_id": c, "parent_id": p, "name": n}
                for c, p, n in zip(cats.category_id, cats.parent_id, cats.name, strict=True)
            ],
        )
        s.execute(
            insert(Merchant.__table__),
            [
                {"merchant_id": m, "name": n, "country": c, "licence_no": f"L{i}", "status": "approved"}
                for i, (m, n, c) in enumerate(
                    zip(merchants.merchant_id, merchants.name, merchants.country, strict=True)
                )
            ],
        )
        rows = [
            {
                "product_id": r.product_id, "sku": r.sku, "merchant_id": r.merchant_id, "title": r.title,
                "category_id": r.category_id, "brand": r.brand, "origin_country": r.origin_country,
                "price": Decimal(str(r.price)), "cost_price": Decimal("1") if r.self_operated else None,
                "fulfillment": r.fulfillment, "self_operated": bool(r.self_operated), "status": "listed",
            }
            for r in products.itertuples(index=False)
        ]  # fmt: skip
        for i in range(0, len(rows), 10_000):
            s.execute(insert(Product.__table__), rows[i : i + 10_000])
        seed_default_partners(s)  # and their warehouses, which stock rows name
        s.execute(
            insert(Stock.__table__),
            [
                {"product_id": p, "location": LOCATIONS[mode], "quantity": 100, "reserved": 0}
                for p, mode in zip(products.product_id, products.fulfillment, strict=True)
            ],
        )
        _, key = create_api_key(s, "storefront", name="bench")
    rng = np.random.default_rng(11)
    by_merchant = products.groupby("merchant_id")
    leaf_name = dict(zip(cats.category_id, cats.name, strict=True))
    owners = list(by_merchant.groups)
    promoted: set[str] = set()  # a product is in one campaign at a time (`ads.create_campaign`)
    with transaction(factory) as s:
        for c in range(n_campaigns):
            owned = by_merchant.get_group(owners[c % len(owners)])
            owned = owned[~owned.product_id.isin(promoted)]
            if owned.empty:
                continue
            pick = owned.sample(min(5, len(owned)), random_state=c)
            promoted.update(pick.product_id)
            leaf = leaf_name[pick.category_id.iloc[0]]
            ads.create_campaign(
                s,
                owners[c % len(owners)],
                name=f"bench {c}",
                daily_budget="100000",
                product_ids=list(pick.product_id),
                keywords=[
                    ads.KeywordInput(CATEGORY_ZH[leaf], "broad", f"{rng.uniform(0.3, 3):.2f}"),
                    ads.KeywordInput(leaf, "phrase", f"{rng.uniform(0.3, 3):.2f}"),
                ],
            )
    engine.dispose()
    leaves = [leaf_name[c] for c in cats.category_id if c in set(products.category_id)]
    brands = sorted(set(products.brand))
    queries = (
        leaves
        + [CATEGORY_ZH[x] for x in leaves]
        + [f"日本 {CATEGORY_ZH[x]}" for x in leaves]
        + brands[:200]
        + [b[:-1] + "x" for b in brands[:100] if len(b) > 5]  # typos
        + [f"{b} {x}" for b, x in zip(brands[:100], leaves * 10, strict=False)]
    )
    return key, queries


def serve(workdir: Path, port: int) -> None:
    import uvicorn

    from commerce.db import make_engine, make_session_factory
    from crosscart.settings import Settings
    from serving.app import create_app

    class NoModel:
        def champion(self):
            return None

        def load(self, version):
            raise LookupError(version)

    settings = Settings(
        data_dir=workdir,
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        model_poll_seconds=3600,
        rate_limit_per_minute=10_000_000,
    )
    app = create_app(
        settings,
        session_factory=make_session_factory(make_engine(settings.resolved_database_url)),
        model_source=NoModel(),
        uplift_source=NoModel(),
        catalog_refresh_seconds=3600,
    )
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=60
    )


def _wait_search(url: str, key: str, timeout: float = 900.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = httpx.get(url + "/v1/search?q=cream", headers={"Authorization": f"Bearer {key}"}, timeout=5)
            if r.status_code == 200 and r.json()["total"] > 0:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become ready")


def bench_in_process(workdir: Path, key: str, paths: list[str]) -> dict:
    """CPU per request through the whole ASGI app in this process (no network, no load generator):
    /v1/search with its lookup cache warm and with every cache cleared before each request (the cost of
    a miss), against the existing /v1/products listing and /health on the same app."""
    import asyncio

    import httpx

    from commerce.db import make_engine, make_session_factory
    from crosscart.settings import Settings
    from serving.app import create_app

    class NoModel:
        def champion(self):
            return None

        def load(self, version):
            raise LookupError(version)

    settings = Settings(
        data_dir=workdir, database_url=f"sqlite:///{workdir / 'bench.db'}", rate_limit_per_minute=10**9
    )
    app = create_app(
        settings,
        session_factory=make_session_factory(make_engine(settings.resolved_database_url)),
        model_source=NoModel(),
        uplift_source=NoModel(),
        start_background=False,
    )
    out = {}

    async def run() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                headers = {"Authorization": f"Bearer {key}"}
                search = app.state.search
                start = time.process_time()
                for path in paths:
                    search.clear_cache()
                    await client.get(path, headers=headers)
                out["search_uncached_cpu_ms"] = round((time.process_time() - start) / len(paths) * 1000, 3)
                for path in paths:  # warm the lookup cache, as the HTTP run does
                    await client.get(path, headers=headers)
                runs = {
                    "search": paths,
                    "products_listing": ["/v1/products?q=cream&limit=20"] * len(paths),
                    "health": ["/health"] * len(paths),
                }
                for name, batch in runs.items():
                    start = time.process_time()
                    for path in batch:
                        await client.get(path, headers=headers)
                    out[f"{name}_cpu_ms"] = round((time.process_time() - start) / len(batch) * 1000, 3)

    asyncio.run(run())
    out["search_vs_products_listing"] = round(out["search_cpu_ms"] / out["products_listing_cpu_ms"], 2)
    return out


def bench_http(workdir: Path, n_products: int, rate: float, seconds: int, n_campaigns: int) -> dict:
    from bench.serving import _free_port, _run_load

    key, queries = build_database(workdir / "bench.db", n_products, n_campaigns)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.search", "_serve", "--workdir", str(workdir), "--port", str(port)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        _wait_search(url, key)
        rng = np.random.default_rng(5)
        paths = []
        for i in range(int(rate * seconds)):
            q = quote(queries[rng.integers(0, len(queries))])
            paths.append(f"/v1/search?q={q}&limit=20" + (f"&shopper_id=s{i % 500}" if i % 2 else ""))
        # Warm-up: every distinct request once (untimed), so the measurement is the steady state of a
        # replica whose lookup cache holds the query set; the cost of a miss is reported separately.
        distinct = sorted(set(paths))
        _run_load(url, key, distinct, workdir, mode="rate", rate=rate / 2)
        at_rate = _run_load(url, key, paths, workdir, mode="rate", rate=rate)
        health = _run_load(url, key, ["/health"] * len(paths), workdir, mode="rate", rate=rate)
        import httpx

        probe = httpx.get(
            url + "/v1/search?q=" + quote("面霜"), headers={"Authorization": f"Bearer {key}"}
        ).json()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    in_process = bench_in_process(workdir, key, paths[:2000])
    return {
        "products": n_products,
        "load_average_1m": round(os.getloadavg()[0], 1),
        "in_process": in_process,
        "keyword_campaigns": n_campaigns,
        "distinct_requests": len(set(paths)),
        "cache": "warm: every distinct request sent once before the timed run",
        "rate_rps": rate,
        "seconds": seconds,
        "search_at_rate": at_rate,
        "health_at_rate": health,
        "p99_ratio_to_health": round(at_rate["p99_ms"] / health["p99_ms"], 2) if health["p99_ms"] else None,
        "sponsored_on_probe_query": len(probe["sponsored"]),
    }


# ---------------------------------------------------------------- ranking


#: Trust bias of the stress run (clicks on an examined result regardless of attraction, with probability
#: TRUST_BIAS / position): Vardasbi et al. 2020's simulation uses 0.65 / position for non-relevant results.
TRUST_BIAS = 0.65


def bench_ranking(scale: str, workdir: Path, seeds: tuple[int, ...] = (0, 1)) -> dict:
    """The full evaluation for the first seed; per seed (marketplace, logs and rankers), the debiased /
    not-debiased comparison on the randomized slice's clicks and against the simulator's true attraction;
    then the first seed's marketplace again with trust bias in the clicks (which IPW does not model)."""
    from features.synth import generate_marketplace
    from features.synth.search_logs import simulate_search_logs
    from training.evaluate_search import evaluate_search

    start = time.perf_counter()
    runs = []
    for seed in seeds:
        generate_marketplace(workdir / f"m{seed}", scale, seed=seed)
        runs.append(evaluate_search(workdir / f"m{seed}", seed=seed))
    simulate_search_logs(workdir / f"m{seeds[0]}", seed=seeds[0], trust_bias=TRUST_BIAS)
    trust = evaluate_search(workdir / f"m{seeds[0]}", seed=seeds[0])
    result = runs[0]
    key = "ndcg@10"
    return {
        "scale": scale,
        "seconds": round(time.perf_counter() - start, 1),
        "train_searches": result["train_searches"],
        "test_searches": result["test_searches"],
        "position_propensity": result["position_propensity"],
        "true_examination": result["true_examination"],
        "randomized_slice": result["randomized_slice"],
        "clicked_queries": result["clicked_queries"],
        "ratios": result["ratios"],
        f"debiased_minus_no_debias_{key}": result[f"debiased_minus_no_debias_{key}"],
        f"ranker_minus_bm25_{key}": result[f"ranker_minus_bm25_{key}"],
        "true_relevance": result["true_relevance"],
        "true_relevance_all_traffic": result["true_relevance_all_traffic"],
        "debiased_vs_no_debias_by_seed": [_seed_row(seed, r) for seed, r in zip(seeds, runs, strict=True)],
        "trust_bias_stress": {
            "trust_bias": TRUST_BIAS,
            "position_propensity": trust["position_propensity"],
            **_seed_row(seeds[0], trust),
        },
    }


def _seed_row(seed: int, r: dict) -> dict:
    key = "ndcg@10"
    truth, everywhere = r["true_relevance"], r["true_relevance_all_traffic"]
    return {
        "seed": seed,
        "clicks_ratio": r["ratios"][f"debiased_vs_no_debias_{key}"],
        "clicks_difference": r[f"debiased_minus_no_debias_{key}"],
        "true_relevance_ratio": truth[f"debiased_vs_no_debias_{key}"],
        "true_relevance_difference": truth[f"debiased_minus_no_debias_{key}"],
        "true_relevance_all_traffic_ratio": everywhere[f"debiased_vs_no_debias_{key}"],
        "true_relevance_all_traffic_difference": everywhere[f"debiased_minus_no_debias_{key}"],
        "ranker_vs_bm25_clicks": r["ratios"][f"ranker_vs_bm25_{key}"],
        "ranker_vs_bm25_clicks_difference": r[f"ranker_minus_bm25_{key}"],
        "ranker_vs_bm25_true_relevance": truth[f"ranker_vs_bm25_{key}"],
    }


def main(argv: list[str] | None = None) -> None:
    from bench import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    parser.add_argument("--quick", action="store_true", help="20k products, 5 s of load, tiny-scale ranking")
    parser.add_argument("--skip-ranking", action="store_true")
    parser.add_argument(
        "--ranking-only",
        action="store_true",
        help="measure only the ranker (load-independent) and keep the other sections of the last results",
    )
    s = sub.add_parser("_serve")
    s.add_argument("--workdir", type=Path, required=True)
    s.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "_serve":
        serve(args.workdir, args.port)
        return
    if args.ranking_only:
        _ranking_only(args.quick)
        return
    n_products = 20_000 if args.quick else 100_000
    result: dict = {"targets": TARGETS}
    result["index"] = bench_index(n_products)
    with tempfile.TemporaryDirectory(prefix="crosscart-search-bench-") as tmp:
        result["http"] = bench_http(Path(tmp), n_products, 200.0, 5 if args.quick else 20, 300)
    if not args.skip_ranking:
        with tempfile.TemporaryDirectory(prefix="crosscart-search-rank-") as tmp:
            result["ranking"] = bench_ranking("tiny" if args.quick else "demo", Path(tmp))
    _print_table(result)
    if not args.quick:
        write_result("search", result)


def _ranking_only(quick: bool) -> None:
    """Re-measure the ranking section only: its figures (nDCG, MRR) do not depend on machine load, so the
    latency sections of the last full run, measured on a quiet machine, are kept as they are."""
    from bench import RESULTS_DIR, write_result

    with tempfile.TemporaryDirectory(prefix="crosscart-search-rank-") as tmp:
        ranking = bench_ranking("tiny" if quick else "demo", Path(tmp))
    for name, value in ranking["ratios"].items():
        print(f"{name:<44}{value:>12.3f}" if value is not None else f"{name:<44}{'n/a':>12}")
    _print_seeds(ranking)
    if not quick:
        previous = json.loads((RESULTS_DIR / "search.json").read_text())
        write_result("search", {**previous, "ranking": ranking})


def _print_table(r: dict) -> None:
    idx, http = r["index"], r["http"]
    print(f"{'measure':<44}{'value':>12}{'target':>10}")
    label = f"index build, FTS5, {idx['products']} products (s)"
    print(f"{label:<44}{idx['fts5_build_seconds']:>12}{30:>10}")
    cpu, load = idx["fts5_build_cpu_seconds"], idx["load_average_1m"]
    print(f"{'  of which CPU (s); load average':<44}{cpu:>12}{load:>10}")
    miss = idx["fts5_uncached_match_ms"]
    print(f"{'uncached parse + match p50 / p99 (ms)':<44}{miss['p50_ms']:>6} / {miss['p99_ms']}")
    if "memory_build_seconds" in idx:
        label = "index build, memory (API default) (s)"
        print(f"{label:<44}{idx['memory_build_seconds']:>12}{30:>10}")
        miss = idx["memory_uncached_match_ms"]
        print(f"{'  uncached parse + match p50 / p99 (ms)':<44}{miss['p50_ms']:>6} / {miss['p99_ms']}")
    if "postgresql_build_seconds" in idx:
        print(f"{'index build, PostgreSQL (s)':<44}{idx['postgresql_build_seconds']:>12}{'':>10}")
    at = http["search_at_rate"]
    print(f"{'GET /v1/search p50 at 200 rps (ms)':<44}{at['p50_ms']:>12}")
    print(f"{'GET /v1/search p99 at 200 rps (ms)':<44}{at['p99_ms']:>12}{30:>10}")
    print(f"{'/health p99 at the same rate (ms)':<44}{http['health_at_rate']['p99_ms']:>12}")
    ip = http["in_process"]
    print(f"{'in-process CPU/request: search (ms)':<44}{ip['search_cpu_ms']:>12}")
    if "search_uncached_cpu_ms" in ip:
        print(f"{'  search, every cache cleared (ms)':<44}{ip['search_uncached_cpu_ms']:>12}")
    listing, health = ip["products_listing_cpu_ms"], ip["health_cpu_ms"]
    print(f"{'  /v1/products listing; /health (ms)':<44}{listing:>12}{health:>10}")
    if "ranking" in r:
        for name, value in r["ranking"]["ratios"].items():
            print(f"{name:<44}{value:>12.3f}" if value is not None else f"{name:<44}{'n/a':>12}")
        _print_seeds(r["ranking"])


def _print_seeds(ranking: dict) -> None:
    print("position propensity, estimated / true:")
    curves = zip(ranking["position_propensity"], ranking["true_examination"], strict=True)
    print("  " + "  ".join(f"{e:.3f}/{t:.3f}" for e, t in curves))
    head = f"{'debiased / not, nDCG@10':<24}{'clicks':>8}{'95% CI of difference':>22}"
    print(f"{head}{'truth':>8}{'95% CI':>22}{'truth, all':>11}{'95% CI':>22}")
    stress = ranking["trust_bias_stress"]
    for row in [*ranking["debiased_vs_no_debias_by_seed"], stress]:
        label = f"  seed {row['seed']}" + (f", trust bias {stress['trust_bias']}" if row is stress else "")
        cells = []
        for name in ("clicks", "true_relevance", "true_relevance_all_traffic"):
            d = row[f"{name}_difference"]
            ci = f"[{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]"
            cells.append(f"{row[f'{name}_ratio']:>8.4f}{ci:>22}")
        print(f"{label:<24}{''.join(cells)}")


if __name__ == "__main__":
    main()
