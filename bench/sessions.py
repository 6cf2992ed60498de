"""Session-based recommendation: quality on the synthetic marketplace's visits, blending for signed-in
shoppers, and serving latency of /v1/sessions/{id}/recommendations with 100k products.

    .venv/bin/python -m bench.sessions                  # everything; writes bench/results/sessions.json
    .venv/bin/python -m bench.sessions --quick          # a slice of it and shorter loads
    .venv/bin/python -m bench.sessions --part serving   # only 3. (1.-2. are kept from the last run)
    .venv/bin/python -m bench.sessions --part quality   # only 1.-2. (3. is kept from the last run)

1. Next-item quality (session-rec protocol, `training.evaluate_session`): views of the generated
   marketplace, the last 7 days' visits as test; V-SKNN, STAN and VSTAN against session and global
   popularity, and `auto`. Then a raw click stream shaped like the public ones (features.synth.clickstream:
   power-law popularity, 40% one-click visits, repeated clicks, items seen once), the last day as test:
   `auto` and VSTAN against sequential rules, V-SKNN and STAN with session-rec's published settings;
   and bench.realistic's harder stream (one- and two-click visits dominate, a third of clicks repeat,
   double clicks at the same second, a tail of very long visits, Zipf ~1 items), the same way.
2. Blending for signed-in shoppers: the long-term model (ALS on each shopper's earlier events) and the
   session model combined as the API does (`serving.sessions.blend`); the weight is learned on half of the
   test visits (grid 0..1 by MRR@20) and reported on the other half, against each part alone.
3. Serving: STAN over a 100k-product catalog (bench.serving's generated catalog, visits drawn by category
   and popularity) behind the real app in a uvicorn process, live sessions in Redis (database 15) when
   reachable; in-process page time, then HTTP latency at 200 requests/s from an open-loop generator
   (bench.serving's) against /health on the same server.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
MODELS = ("pop", "spop", "sr", "vsknn", "stan", "vstan", "auto")
STREAM_MODELS = ("pop", "sr", "vsknn", "stan", "vstan", "hybrid", "auto")
PUBLISHED = ("sr", "vsknn", "stan")  # the strongest simple published baselines: the bar on the raw streams
REDIS_URL = "redis://127.0.0.1:6379/15"
TOKEN = "bench-session-{:012d}"


# ---------------------------------------------------------------- 1. quality on the marketplace


def marketplace_clicks(out: Path, parts: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(views as session clicks with the shopper, all events) of a generated demo marketplace."""
    from features.synth import generate_marketplace
    from training.sessions import marketplace_clicks as views

    generate_marketplace(out, "demo", seed=0, max_parts=parts)
    events = pd.read_parquet(
        out / "events", columns=["ts", "shopper_id", "product_id", "event_type", "session_id"]
    )
    return views(out), events


def bench_quality(train: pd.DataFrame, test: pd.DataFrame, models=MODELS) -> list[dict]:
    from training.evaluate_session import evaluate_session_models

    rows = []
    for row in evaluate_session_models(models, train, test, k=20):
        rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        print(f"  {row['model']}: hr@20 {row['hr@20']:.4f} mrr@20 {row['mrr@20']:.4f}", flush=True)
    return rows


def bench_stream(quick: bool, hard: bool = False) -> dict:
    """The raw-stream check: every model on a generated click stream (features.synth.clickstream, or
    with `hard` bench.realistic's harder one), ratios against the best of sequential rules, V-SKNN and
    STAN at session-rec's published settings (per metric)."""
    from bench.realistic import HARD_SHAPE, hard_click_stream, stream_shape
    from features.synth.clickstream import StreamShape, click_stream
    from training.evaluate_session import split_last_days

    n_sessions, n_items, days = (15_000, 3_000, 20) if quick else (60_000, 10_000, 30)
    if hard:
        clicks, shape = hard_click_stream(n_sessions, n_items, days=days, seed=1), HARD_SHAPE
    else:
        clicks, shape = click_stream(n_sessions, n_items, days=days, seed=1), vars(StreamShape())
    train, test = split_last_days(clicks, 1)
    rows = bench_quality(train, test, STREAM_MODELS)
    by_model = {row["model"]: row for row in rows}
    bar = {m: max(by_model[p][m] for p in PUBLISHED) for m in ("hr@20", "mrr@20")}
    return {
        "stream": {
            "sessions": n_sessions, "items": n_items, "days": days, "shape": shape,
            **stream_shape(clicks, train, test),
        },
        "protocol": "session-rec next item, last day's visits as test",
        "models": rows,
        "best_published": {m: bar[m] for m in bar},
        "ratios": {
            f"{model}_vs_best_published_{m}": round(by_model[model][m] / bar[m], 3)
            for model in ("vstan", "hybrid", "auto")
            for m in ("hr@20", "mrr@20")
        },
    }  # fmt: skip


# ---------------------------------------------------------------- 2. blending for signed-in shoppers


def bench_blend(train: pd.DataFrame, test: pd.DataFrame, events: pd.DataFrame, session_model: str) -> dict:
    from features.interactions import build_interactions
    from models.recommenders import make_recommender
    from models.sessions import SessionData, make_session_model
    from serving.sessions import blend
    from training.evaluate_session import held_out_sessions

    cut = pd.Timestamp(test["ts"].min(), unit="s", tz="UTC")
    history = events[(events["ts"] < cut) & events["product_id"].notna()]
    history = history.rename(columns={"shopper_id": "user_id", "product_id": "item_id"})
    interactions = build_interactions(history[["user_id", "item_id", "ts", "event_type"]], value_col=None)
    long_model = make_recommender("als").fit(interactions)
    train_data = SessionData.from_frame(train, "session_id", "item_id", "ts")
    model = make_session_model(session_model).fit(train_data)
    long_col = pd.Index(long_model.item_ids_).get_indexer(train_data.item_ids)  # session code -> ALS column
    code_of_col = np.full(len(long_model.item_ids_), -1)
    code_of_col[long_col[long_col >= 0]] = np.flatnonzero(long_col >= 0)

    shopper_of = test.groupby("session_id")["shopper_id"].first()
    data = held_out_sessions(train_data, test)
    # held_out_sessions keeps sessions in first-seen order: recover their ids the same way
    kept = test[pd.Index(train_data.item_ids).get_indexer(test["item_id"]) >= 0]
    sizes = kept.groupby("session_id", sort=False).size()
    ids = sizes[sizes >= 2].index.to_numpy()
    assert len(ids) == data.n_sessions
    rows: dict[str, np.ndarray | None] = {}
    cases = []  # (half, shopper's score row, session candidates, target)
    for s, session_id in enumerate(ids):
        shopper = shopper_of[session_id]
        if shopper not in rows:
            rows[shopper] = long_model.user_scores(shopper)
        clicks = data.session(s)
        for i in range(1, len(clicks)):
            cases.append((s % 2, rows[shopper], model.rank_codes(clicks[:i], 200), clicks[i]))

    def ranking(weight: float | None, row, candidates) -> np.ndarray:
        if weight is None:  # the long-term model alone: its own top list
            if row is None:
                return np.empty(0, dtype=np.int64)
            codes = code_of_col[np.argsort(-row, kind="stable")[:100]]
            return codes[codes >= 0]
        codes, _ = candidates
        if row is None or len(codes) == 0:
            return codes
        cols = long_col[codes]
        return blend(candidates, np.where(cols >= 0, row[np.maximum(cols, 0)], 0.0), weight)[0]

    def score(weight: float | None, half: int) -> tuple[float, float]:
        hits = mrr = n = 0.0
        for h, row, candidates, target in cases:
            if h == half:
                n += 1
                where = np.flatnonzero(ranking(weight, row, candidates)[:20] == target)
                if len(where):
                    hits, mrr = hits + 1, mrr + 1.0 / (where[0] + 1)
        return hits / n, mrr / n

    grid = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0]
    learned = max(grid, key=lambda w: sum(score(w, 0)))
    out = {
        "long_term_model": "als", "session_model": session_model, "learned_weight": learned,
        "learned_on": "even test visits, by hr@20 + mrr@20", "reported_on": "odd test visits", "grid": grid,
        "n_cases": len(cases),
    }  # fmt: skip
    for label, weight in (("long_term", None), ("session", 0.0), ("blend", learned)):
        hr, mrr = score(weight, 1)
        out[label] = {"hr@20": round(hr, 4), "mrr@20": round(mrr, 4)}
    for part in ("session", "long_term"):
        for metric in ("hr@20", "mrr@20"):
            out[f"blend_vs_{part}_{metric}"] = round(out["blend"][metric] / out[part][metric], 3)
    return out


# ---------------------------------------------------------------- 3. serving with 100k products


def catalog_sessions(n_products: int, n_sessions: int, seed: int = 11) -> pd.DataFrame:
    """Visits over bench.serving's generated catalog: each picks a category, clicks 1 + Poisson(2) of its
    products by a Zipf popularity within the category, one minute apart."""
    from bench.serving import synthetic_world

    _, products, *_ = synthetic_world(n_products, 1000)
    rng = np.random.default_rng(seed)
    leaf = pd.factorize(products["category_id"])[0]
    order = np.argsort(leaf, kind="stable")
    start = np.searchsorted(leaf[order], np.arange(leaf.max() + 2))
    rank = np.arange(len(order)) - start[leaf[order]]
    weight = 1.0 / (rank + 1.0) ** 0.8
    cum = np.cumsum(weight)
    before = np.concatenate([[0.0], cum])[start[:-1]]
    total = cum[start[1:] - 1] - before
    lengths = 1 + rng.poisson(2.0, n_sessions)
    s_leaf = rng.integers(0, leaf.max() + 1, n_sessions)
    c_leaf = np.repeat(s_leaf, lengths)
    target = before[c_leaf] + rng.random(len(c_leaf)) * total[c_leaf]
    pick = np.clip(np.searchsorted(cum, target, side="right"), start[c_leaf], start[c_leaf + 1] - 1)
    session = np.repeat(np.arange(n_sessions), lengths)
    return pd.DataFrame(
        {
            "session_id": session.astype(str),
            "item_id": products["product_id"].to_numpy()[order[pick]],
            "ts": session * 60.0 + np.arange(len(session)) % 7,
        }
    )


# what auto picks on the raw click stream: a wide STAN blended with sequential rules (bench_stream)
WIDE_HYBRID = {
    "models": ("stan", "sr"), "weights": (0.9, 0.1), "params": ({"k": 500, "sample_size": 2500}, {}),
}  # fmt: skip


def fit_session_model(
    workdir: Path, n_products: int, n_sessions: int, name: str = "stan", params: dict | None = None,
    file: str = "session.joblib",
) -> dict:  # fmt: skip
    from models.sessions import SessionData, make_session_model

    clicks = catalog_sessions(n_products, n_sessions)
    started = time.perf_counter()
    model = make_session_model(name, **(params or {}))
    model.fit(SessionData.from_frame(clicks, "session_id", "item_id", "ts"))
    fit = time.perf_counter() - started
    model.save(workdir / file)
    return {"clicks": len(clicks), "sessions": n_sessions, "fit_seconds": round(fit, 2)}


def visits(n: int, n_products: int, seed: int = 5) -> list[list[str]]:
    """Live visits to replay: real visit shapes (first clicks of generated sessions)."""
    clicks = catalog_sessions(n_products, n, seed)
    return [group.tolist() for _, group in clicks.groupby("session_id", sort=False)["item_id"]]


def bench_in_process(workdir: Path, n_products: int, requests: int, file: str = "session.joblib") -> dict:
    from bench.serving import _summary, build_catalog
    from models.sessions import load_session_model
    from serving.model_store import ModelSnapshot
    from serving.recommend import Policy, recommend
    from serving.sessions import SessionRanker

    catalog = build_catalog(n_products, 1000)
    snapshot = ModelSnapshot("crosscart-session", "1", load_session_model(workdir / file))
    pages = visits(requests, n_products)
    times, ranker = [], SessionRanker()
    policy = Policy(max_per_category=100)  # as the session route
    for items in pages:
        started = time.perf_counter()
        positions, scores = ranker.candidates(catalog, snapshot.recommender, items, 200)
        seen = catalog.positions(np.array(items, dtype=object))
        recommend(
            catalog,
            snapshot,
            "",
            10,
            policy=policy,
            ranked=(positions, scores, "stan"),
            exclude=seen.tolist(),
        )
        times.append((time.perf_counter() - started) * 1000)
    return _summary(times)


def serve(workdir: Path, port: int, n_products: int, redis_url: str) -> None:
    import uvicorn

    from bench.serving import build_catalog
    from commerce.db import make_engine, make_session_factory
    from crosscart.settings import Settings
    from models.sessions import load_session_model
    from serving.app import create_app

    catalog = build_catalog(n_products, 1000)
    model = load_session_model(workdir / "session.joblib")

    class Source:
        def __init__(self, found):
            self.found = found

        def champion(self):
            return "1" if self.found is not None else None

        def load(self, version):
            return self.found

    settings = Settings(
        data_dir=workdir, database_url=f"sqlite:///{workdir / 'bench.db'}", model_poll_seconds=3600,
        redis_url=redis_url,
    )  # fmt: skip
    app = create_app(
        settings,
        session_factory=make_session_factory(make_engine(settings.resolved_database_url)),
        model_source=Source(None),
        uplift_source=Source(None),
        session_model_source=Source(model),
        catalog_loader=lambda: catalog,
        catalog_refresh_seconds=3600,
        warm_shoppers=0,
    )
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=60
    )


def _wait_started(url: str, timeout: float = 600.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not start")


def bench_http(
    workdir: Path, n_products: int, n_visits: int, rate: float, seconds: int, redis_url: str
) -> dict:
    import httpx

    from bench.serving import _free_port, _run_load
    from commerce.db import Base, make_engine, make_session_factory, transaction
    from commerce.services.access import create_api_key

    engine = make_engine(f"sqlite:///{workdir / 'bench.db'}")
    import commerce.all_models  # noqa: F401

    Base.metadata.create_all(engine)
    with transaction(make_session_factory(engine)) as s:
        _, key = create_api_key(s, "storefront", name="bench")
    engine.dispose()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.sessions", "_serve", "--workdir", str(workdir), "--port", str(port),
         "--products", str(n_products), "--redis-url", redis_url],
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    try:
        _wait_started(url)
        headers = {"Authorization": f"Bearer {key}"}
        batch, posted = [], 0
        now = datetime.now(UTC)
        for v, items in enumerate(visits(n_visits, n_products)):
            for i, item in enumerate(items):
                batch.append(
                    {"event_id": f"b{v}-{i}", "ts": (now + timedelta(seconds=i)).isoformat(),
                     "shopper_id": f"s{v}", "event_type": "view", "product_id": item,
                     "session_id": TOKEN.format(v)}
                )  # fmt: skip
            if len(batch) >= 900:
                posted += httpx.post(
                    url + "/v1/events", json={"events": batch}, headers=headers, timeout=60
                ).json()["session_events"]
                batch = []
        if batch:
            posted += httpx.post(
                url + "/v1/events", json={"events": batch}, headers=headers, timeout=60
            ).json()["session_events"]
        rng = np.random.default_rng(3)
        paths = [
            f"/v1/sessions/{TOKEN.format(rng.integers(0, n_visits))}/recommendations?n=10"
            for _ in range(int(rate * seconds))
        ]
        _run_load(url, key, paths[: int(rate)], workdir, mode="rate", rate=rate)  # warm-up
        at_rate = _run_load(url, key, paths, workdir, mode="rate", rate=rate)
        shoppers = [f"/v1/shoppers/s{rng.integers(0, n_visits)}/recommendations?n=10" for _ in paths]
        shopper_pages = _run_load(url, key, shoppers, workdir, mode="rate", rate=rate)
        health = _run_load(url, key, ["/health"] * len(paths), workdir, mode="rate", rate=rate)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    return {
        "rate_rps": rate,
        "seconds": seconds,
        "live_sessions": n_visits,
        "session_events_posted": posted,
        "session_store": "redis" if redis_url else "in-process",
        "sessions_at_rate": at_rate,
        "shopper_pages_at_rate": shopper_pages,  # baseline: the shopper page (popularity) on the same server
        "health_at_rate": health,
        "p99_ratio_to_shopper_page": round(at_rate["p99_ms"] / shopper_pages["p99_ms"], 2),
        "p99_ratio_to_health": round(at_rate["p99_ms"] / health["p99_ms"], 2),
        "load_average_after": round(os.getloadavg()[0], 1),  # a shared machine skews every latency
    }


def _redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
        return REDIS_URL
    except Exception:
        return ""


def _clear_redis(url: str) -> None:
    if url:
        import redis

        client = redis.Redis.from_url(url)
        for name in client.scan_iter("crosscart:session:*"):
            client.delete(name)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.sessions")
    sub = parser.add_subparsers(dest="cmd")
    sv = sub.add_parser("_serve")
    sv.add_argument("--workdir", type=Path, required=True)
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--products", type=int, required=True)
    sv.add_argument("--redis-url", default="")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--part", choices=("all", "quality", "serving"), default="all",
        help="quality: 1.-2. only; serving: 3. only; the other part is kept from the last results file",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.cmd == "_serve":
        serve(args.workdir, args.port, args.products, args.redis_url)
        return

    from bench import RESULTS_DIR, write_result

    previous = RESULTS_DIR / "sessions.json"
    result = json.loads(previous.read_text()) if args.part != "all" and previous.is_file() else {}
    result["quick"] = args.quick
    measured = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    with tempfile.TemporaryDirectory(prefix="crosscart-bench-sessions-") as tmp:
        workdir = Path(tmp)
        if args.part in ("all", "quality"):
            result.update(run_quality(workdir, args.quick))
            result["quality"]["measured"] = measured
        if args.part in ("all", "serving"):
            result["serving"] = {**run_serving(workdir, args.quick), "measured": measured}
    write_result("sessions", result)
    _print_table(result)


def run_quality(workdir: Path, quick: bool) -> dict:
    from training.evaluate_session import split_last_days

    print("1. next-item quality on the synthetic marketplace", flush=True)
    clicks, events = marketplace_clicks(workdir / "market", 2 if quick else None)
    train, test = split_last_days(clicks, 7)
    quality = bench_quality(train.drop(columns="shopper_id"), test.drop(columns="shopper_id"))
    by_model = {row["model"]: row for row in quality}
    best = max(("vsknn", "stan", "vstan"), key=lambda m: by_model[m]["mrr@20"])
    print("   a raw click stream (features.synth.clickstream)", flush=True)
    stream = bench_stream(quick)
    print("   a harder raw click stream (bench.realistic)", flush=True)
    hard_stream = bench_stream(quick, hard=True)
    print(f"2. blending ALS with {best} for signed-in shoppers", flush=True)
    blending = bench_blend(train, test, events, best)
    ratios = {
        f"{m}_vs_{base}_{metric}": round(by_model[m][metric] / by_model[base][metric], 3)
        for m in ("vsknn", "stan", "vstan", "auto")
        for base in ("pop", "spop")
        for metric in ("hr@20", "mrr@20")
    }
    return {
        "quality": {
            "protocol": "session-rec next item, views, last 7 days test",
            "models": quality,
            "ratios": ratios,
            "raw_stream": stream,
            "hard_stream": hard_stream,
        },
        "blending": blending,
    }


def run_serving(workdir: Path, quick: bool) -> dict:
    n_products = 20_000 if quick else 100_000
    print(f"3. serving with {n_products:,} products", flush=True)
    fitted = fit_session_model(workdir, n_products, n_sessions=n_products * 2)
    in_process = bench_in_process(workdir, n_products, 500 if quick else 2000)
    # the heavier model auto tends to serve, in process only (the HTTP run serves STAN)
    fit_session_model(workdir, n_products, n_products * 2, "hybrid", WIDE_HYBRID, "hybrid.joblib")
    in_process_hybrid = bench_in_process(workdir, n_products, 500 if quick else 2000, "hybrid.joblib")
    redis_url = _redis_url()
    try:
        http = bench_http(workdir, n_products, 2000, 200.0, 10 if quick else 30, redis_url)
    finally:
        _clear_redis(redis_url)
    return {
        "products": n_products, "model": "stan", "fit": fitted, "in_process": in_process,
        "in_process_wide_hybrid": {"params": WIDE_HYBRID, **in_process_hybrid}, "http": http,
    }  # fmt: skip


def _models_table(title: str, rows: list[dict]):
    from rich.table import Table

    columns = ("model", "hr@20", "mrr@20", "hr@10", "mrr@10", "fit_seconds", "predict_ms_p99")
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    return table


def _print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    if "quality" in r:
        q = r["quality"]
        console.print(_models_table("Next item on the marketplace's visits (test: last 7 days)", q["models"]))
        console.print(q["ratios"])
        streams = (("raw_stream", "a raw click stream"), ("hard_stream", "a harder raw click stream"))
        for key, title in streams:
            stream = q[key]
            console.print(_models_table(f"Next item on {title} (test: last day)", stream["models"]))
            console.print(stream["stream"])
            console.print(stream["ratios"])
        for row in (*q["models"], *q["raw_stream"]["models"], *q["hard_stream"]["models"]):
            if "chosen" in row:
                console.print(f"auto chose {row['chosen']}")
    if "blending" in r:
        b = r["blending"]
        blend = Table(
            title=f"Signed-in shoppers: ALS + {b['session_model']} (weight {b['learned_weight']}, learned)"
        )
        for column in ("", "hr@20", "mrr@20"):
            blend.add_column(column, justify="right")
        for label in ("long_term", "session", "blend"):
            blend.add_row(label, str(b[label]["hr@20"]), str(b[label]["mrr@20"]))
        console.print(blend)
    if "serving" in r:
        s = r["serving"]
        h, inproc = s["http"], s["in_process"]
        console.print(
            f"serving, {s['products']:,} products: in-process p50/p99 {inproc['p50_ms']}/{inproc['p99_ms']}"
            " ms;"
            f" HTTP at {h['rate_rps']:.0f} rps p99 {h['sessions_at_rate']['p99_ms']} ms (shopper page"
            f" {h['shopper_pages_at_rate']['p99_ms']} ms, /health {h['health_at_rate']['p99_ms']} ms;"
            f" sessions in {h['session_store']}; load average {h['load_average_after']};"
            f" measured {s.get('measured', '?')})"
        )


if __name__ == "__main__":
    main()
