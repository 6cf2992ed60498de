"""The `large` marketplace end to end on one machine: time and peak memory of every step.

Steps, each in a fresh child process (`bench.measure`: peak of the summed RSS of the process and its
descendants, sampled every 50 ms), in order, each reading what the previous ones wrote:
- `generate`: the `large` marketplace (`--parts` shopper blocks of 10,000 shoppers, ~0.5M events
  each; 100 blocks = all 1M shoppers, ~51M events; the full 200k-product catalogue either way);
- `features`: `features.distributed.run_feature_job` in-process (interactions, shopper and product
  feature tables as partitioned Parquet; one partition per block);
- `als`: `read_interactions` -> CSR, `ALSRecommender` (implicit, one thread);
- `ranker`: `TwoStageRanker` over ALS and popularity candidates (EASE refuses a 200k catalogue, and
  item-kNN is left out to bound the time), LightGBM in-process;
- `uplift`: the coupon effect model (`training.uplift.fit_effect_model`, X-learner) on every past
  campaign assignment, and its serving bundle;
- `batch`: `training.batch_scoring.score_all` of the ALS model (top 20 of every shopper, in chunks;
  one matrix product and one block top-n per 512 shoppers) and `score_coupon_uplift` (every
  shopper's uplift per coupon kind as of the end, a shopper partition at a time), both as Parquet.
- `serve`: the API (uvicorn, one worker, on 127.0.0.1:18130) over the ALS model and its precomputed
  lists (`serving.precomputed`, named for the served version), the catalogue from `products.parquet`,
  popularity from the feature job's product counts and every shopper's purchases from the event log;
  then GET /v1/shoppers/{id}/recommendations for random shoppers among all of them, open loop at a
  fixed rate: p50/p99, the share of pages whose `model.source` is `precomputed`, the API process's own
  RSS (the step's peak also counts the load generator and this process).

Run (long: use `nice`, in the background, one at a time on a shared machine):
    nice -n 10 .venv/bin/python -m bench.large [--parts 100] [--work DIR] [--steps features,als]
A step whose memory passes 10 GB is stopped and recorded with `aborted: true` and its peak so far.
`--work` keeps the generated data and step outputs (default: a temporary directory); a step's inputs
must be there. Writes bench/results/large.json after every step (`large-PARTS.json` when
`--parts` is below 100, so a slice never replaces the full run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import RESULTS_DIR, write_result
from bench.measure import measure

STEPS = ("generate", "features", "als", "ranker", "uplift", "batch", "serve")
FULL_PARTS = 100
LIMIT_MB = 8 * 1024
ABORT_MB = 10 * 1024  # a step past this is stopped (shared machine) and recorded as aborted
ALS = {"factors": 64, "iterations": 15}
SERVE = {"port": 18130, "rate": 100.0, "seconds": 20, "n": 10}


def _parts_rows(path: Path, pattern: str = "*.parquet") -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(path.glob(pattern)))


def generate(work: str, parts: str) -> dict:
    from features.synth.generator import generate_marketplace

    manifest = generate_marketplace(Path(work) / "market", "large", seed=0, max_parts=int(parts))
    return {k: manifest["counts"][k] for k in ("events", "shoppers.parquet", "products.parquet")}


def features(work: str) -> dict:
    from features.distributed import run_feature_job

    paths = run_feature_job(Path(work) / "market", Path(work) / "features", half_life_days=30.0)
    return {name: _parts_rows(path) for name, path in paths.items()}


def als(work: str) -> dict:
    from features.distributed import read_interactions
    from models.recommenders.factorization import ALSRecommender

    data = read_interactions(Path(work) / "features" / "interactions")
    model = ALSRecommender(**ALS).fit(data)
    with open(Path(work) / "als.pkl", "wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"users": len(data.user_ids), "items": len(data.item_ids), "interactions": int(data.matrix.nnz)}


def ranker(work: str) -> dict:
    from features.distributed import read_interactions
    from models.recommenders.ranker import TwoStageRanker

    data = read_interactions(Path(work) / "features" / "interactions")
    model = TwoStageRanker(base_models=("als", "popularity"), base_params={"als": ALS}, n_folds=1)
    model.fit(data)
    with open(Path(work) / "ranker.pkl", "wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"train_pairs": model.train_pairs_, "features": len(model.feature_names_)}


def uplift(work: str) -> dict:
    from training.uplift import fit_effect_model, serving_bundle

    market = Path(work) / "market"
    model, _ = fit_effect_model(market)
    bundle = serving_bundle(market, model)
    with open(Path(work) / "uplift.pkl", "wb") as f:
        pickle.dump(bundle, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"arms": [str(a) for a in model.arms_], "features": len(model.feature_names_in_)}


def batch(work: str, chunk_size: str = "5000") -> dict:
    import json as json_

    import pandas as pd

    from training.batch_scoring import score_all, score_coupon_uplift

    with open(Path(work) / "als.pkl", "rb") as f:
        model = pickle.load(f)
    lists = score_all(model, Path(work) / "lists", n=20, chunk_size=int(chunk_size), workers=2)
    del model
    with open(Path(work) / "uplift.pkl", "rb") as f:
        bundle = pickle.load(f)
    market = Path(work) / "market"
    as_of = pd.Timestamp(json_.loads((market / "manifest.json").read_text())["end"])
    coupons = score_coupon_uplift(bundle, market, Path(work) / "coupon_uplift", as_of=as_of)
    return {"list_rows": _parts_rows(lists), "uplift_rows": _parts_rows(coupons)}


class _PageConnection:
    """`bench.serving._Connection` returning the body too (GET, Content-Length replies only)."""

    def __init__(self, host: str, port: int, headers: dict):
        from bench.serving import _Connection

        self.raw = _Connection(host, port, headers)

    async def open(self) -> _PageConnection:
        await self.raw.open()
        return self

    async def page(self, path: str) -> tuple[int, bytes]:
        try:
            return await self._page(path)
        except (asyncio.IncompleteReadError, ConnectionError):  # the server closed an idle keep-alive
            self.raw.writer.close()
            await self.raw.open()
            return await self._page(path)

    async def _page(self, path: str) -> tuple[int, bytes]:
        raw = self.raw
        raw.writer.write(f"GET {path} HTTP/1.1\r\nHost: {raw.host}\r\n{raw.extra}\r\n".encode())
        head = (await raw.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next(int(x.split(":", 1)[1]) for x in head if x.lower().startswith("content-length:"))
        return int(head[0].split()[1]), await raw.reader.readexactly(length)


def serve(work: str) -> dict:
    import httpx
    import numpy as np

    from bench.serving import _summary, _wait_ready
    from serving.precomputed import write_meta

    work = Path(work)
    api = work / "api"
    api.mkdir(exist_ok=True)
    key = _api_key(api / "api.db")
    write_meta(work / "lists", "crosscart-recommender", "1", 20)  # the lists are the served version's
    port = SERVE["port"]
    url = f"http://127.0.0.1:{port}"
    log = api / "server.log"
    started = time.perf_counter()
    with log.open("w") as sink:
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from bench.large import run_api; run_api({str(work)!r}, {SERVE['port']})",
            ],
            cwd=Path(__file__).resolve().parents[1],
            stderr=sink,
        )
    try:
        _wait_ready(url, server, log, timeout=3600)
        headers = {"Authorization": f"Bearer {key}"}
        shoppers = _shopper_ids(work)
        probe = f"{url}/v1/shoppers/{shoppers[0]}/recommendations?n={SERVE['n']}"
        while httpx.get(probe, headers=headers, timeout=60).json()["model"]["source"] != "precomputed":
            if server.poll() is not None or time.perf_counter() - started > 3600:
                raise RuntimeError(f"the precomputed lists never loaded:\n{log.read_text()[-2000:]}")
            time.sleep(1)
        ready_seconds = time.perf_counter() - started
        rng = np.random.default_rng(11)
        total = int(SERVE["rate"] * SERVE["seconds"])
        paths = [
            f"/v1/shoppers/{shoppers[i]}/recommendations?n={SERVE['n']}"
            for i in rng.integers(0, len(shoppers), total + int(SERVE["rate"]))
        ]
        asyncio.run(_open_loop(url, paths[total:], SERVE["rate"], headers))  # warm-up: one second's worth
        latencies, sources = asyncio.run(_open_loop(url, paths[:total], SERVE["rate"], headers))
        api_rss_mb = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    in_server = _server_latencies(log)[-total:]  # the measured requests came last
    return {
        "rate_rps": SERVE["rate"],
        "load_seconds": SERVE["seconds"],
        "shoppers": len(shoppers),
        "start_to_serving_precomputed_seconds": round(ready_seconds, 1),
        "recommendations": _summary(latencies),
        "recommendations_in_server": _summary(in_server),
        "precomputed_share": round(sources.count("precomputed") / len(sources), 4),
        "api_rss_mb": api_rss_mb,
    }


def _api_key(db: Path) -> str:
    import commerce.all_models  # noqa: F401  (every table)
    from commerce.db import Base, make_engine, make_session_factory, transaction
    from commerce.services.access import create_api_key

    engine = make_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    with transaction(make_session_factory(engine)) as s:
        _, key = create_api_key(s, "storefront", name="bench-large")
    engine.dispose()
    return key


def _shopper_ids(work: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(work / "market" / "shoppers.parquet", columns=["shopper_id"])[
        "shopper_id"
    ].to_pylist()


def _rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


async def _open_loop(url: str, paths: list[str], rate: float, headers: dict) -> tuple[list[float], list[str]]:
    """`bench.serving`'s open-loop load on raw keep-alive connections (requests leave on schedule; one
    finding every connection busy opens another), also reading each page's `model.source`."""
    from bench.serving import _split, on_schedule

    host, port = _split(url)
    idle: list[_PageConnection] = []
    latencies: list[float] = []
    sources: list[str] = []

    async def one(path: str) -> None:
        start = time.perf_counter()
        conn = idle.pop() if idle else await _PageConnection(host, port, headers).open()
        status, body = await conn.page(path)
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise RuntimeError(f"{path}: status {status}")
        sources.append(json.loads(body)["model"]["source"])
        idle.append(conn)

    await on_schedule(paths, rate, one)
    return latencies, sources


def _server_latencies(log: Path) -> list[float]:
    """The server's own time per recommendations request (`latency_ms` of its access lines)."""
    out = []
    with log.open() as lines:
        for line in lines:
            if line.startswith("{") and '"event":"request"' in line:
                entry = json.loads(line)
                if entry["path"].endswith("/recommendations"):
                    out.append(entry["latency_ms"])
    return out


def run_api(work: str, port: int) -> None:
    """The API process of the `serve` step (started by it; logs to stderr)."""
    import uvicorn

    from commerce.db import make_engine, make_session_factory
    from crosscart.settings import Settings
    from serving.app import create_app

    work_dir = Path(work)
    with open(work_dir / "als.pkl", "rb") as f:
        model = pickle.load(f)
    catalog = _catalog(work_dir)

    class Local:
        def __init__(self, model):
            self.model = model

        def champion(self):
            return None if self.model is None else "1"

        def load(self, version):
            if self.model is None:
                raise LookupError(version)
            return self.model

    settings = Settings(
        data_dir=work_dir / "api",
        database_url=f"sqlite:///{work_dir / 'api' / 'api.db'}",
        model_poll_seconds=3600,
        precomputed_dir=str(work_dir / "lists"),
    )
    app = create_app(
        settings,
        session_factory=make_session_factory(make_engine(settings.resolved_database_url)),
        model_source=Local(model),
        uplift_source=Local(None),
        delivery_source=Local(None),
        catalog_loader=lambda: catalog,
        catalog_refresh_seconds=3600,
        warm_shoppers=0,  # the batch lists stand in for warming
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _catalog(work: Path):
    """The serving catalogue of the `large` marketplace: products (sellable = listed and in stock),
    categories, popularity from the feature job's product counts (7, 30 and 90 days standing in for the
    API's 7d, 30d and all-time windows) and every shopper's purchased products."""
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from serving.catalog import CatalogSnapshot

    market = work / "market"
    products = pd.read_parquet(market / "products.parquet")
    products["public"] = products["status"] == "listed"
    products["sellable"] = products["public"] & (products["stock"] > 0)
    categories = pd.read_parquet(
        market / "categories.parquet", columns=["category_id", "parent_id", "repurchasable"]
    )
    counts = pd.read_parquet(work / "features" / "product_features")
    activity = pd.concat(
        [
            pd.DataFrame(
                {
                    "window": window,
                    "product_id": counts.index.astype(str),
                    "event_type": kind,
                    "count": counts[f"n_{kind}_{days}d"].to_numpy(),
                    "quantity": counts[f"n_{kind}_{days}d"].to_numpy(),
                }
            )
            for window, days in (("7d", 7), ("30d", 30), ("all", 90))
            for kind in ("view", "cart", "purchase")
        ],
        ignore_index=True,
    )
    bought = ds.dataset(market / "events", format="parquet").to_table(
        columns=["shopper_id", "product_id"], filter=pc.field("event_type") == "purchase"
    )
    purchases = bought.group_by(["shopper_id", "product_id"]).aggregate([]).to_pandas()
    return CatalogSnapshot.from_frames(products, categories, activity, purchases)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", type=int, default=FULL_PARTS, help="shopper blocks (100 = all 1M)")
    parser.add_argument("--work", type=Path, default=None, help="keep data and outputs here")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"subset of {','.join(STEPS)}")
    args = parser.parse_args()
    steps = args.steps.split(",")
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}; choose from {STEPS}")
    name = "large" if args.parts >= FULL_PARTS else f"large-{args.parts}"
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        previous = RESULTS_DIR / f"{name}.json"
        result = json.loads(previous.read_text()) if args.work and previous.exists() else {"steps": []}
        result.update({"parts": args.parts, "limit_mb": LIMIT_MB, "cpu_count": os.cpu_count(), "als": ALS})
        if (work / "market" / "events").is_dir():  # generated by an earlier run
            result["data"] = {
                "events": _parts_rows(work / "market" / "events"),
                **{f: _parts_rows(work / "market", f) for f in ("shoppers.parquet", "products.parquet")},
            }
        print(f"{'step':>9} {'seconds':>9} {'cpu s':>9} {'peak MB':>9} {'<= 8 GB':>8}  result")
        for step in steps:
            step_args = (work, args.parts) if step == "generate" else (work,)
            run = measure(f"bench.large:{step}", *step_args, timeout=4 * 3600, abort_mb=ABORT_MB)
            row = {
                "step": step,
                "seconds": run["seconds"],
                "cpu_seconds": run["cpu_seconds"],
                "peak_rss_mb": run["peak_rss_mb"],
                "within_limit": run["peak_rss_mb"] <= LIMIT_MB,
                "load_average_1min_after": os.getloadavg()[0],
                "result": run["result"],
                "aborted": run.get("aborted", False),
            }
            result["steps"] = [s for s in result["steps"] if s["step"] != step] + [row]
            result["steps"].sort(key=lambda s: STEPS.index(s["step"]))
            if step == "generate" and not row["aborted"]:
                result["data"] = run["result"]
            print(
                f"{step:>9} {row['seconds']:>9.1f} {row['cpu_seconds']:>9.1f} {row['peak_rss_mb']:>9.0f} "
                f"{str(row['within_limit']):>8}  {json.dumps(run['result'])}",
                flush=True,
            )
            write_result(name, result)
            if row["aborted"]:
                print(f"{step} passed {ABORT_MB} MB and was stopped; the later steps need its output")
                break


if __name__ == "__main__":
    main()
