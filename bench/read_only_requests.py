"""GET requests beside a writer on SQLite, with every request transaction BEGIN IMMEDIATE (before) and
with GETs read-only (`serving.deps.reads_only`, after).

    .venv/bin/python -m bench.read_only_requests [--readers 4] [--seconds 10] [--port 18630]

Loads the `tiny` marketplace (`crosscart demo`'s seed) into a SQLite file, then per mode serves the API
(uvicorn, `crosscart serve`'s protocol, in a process of its own) while `readers` threads here loop over
four GET pages that read the database (a product, the coupons, a shopper's orders, a merchant's
products) and one writer process commits a one-row stock UPDATE (a checkout's write) as fast as it can,
with the API's busy timeout. Reported per mode: writer commits/s, GET p50/p95 latency (wall clock: what
a caller waits), GETs/s and failures; the after/before ratios are the figures to quote (one run, on a
loaded host: compare within a run only).
Writes bench/results/read_only_requests.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.faults import NoRegistry  # the pages measured never score

RESULTS = Path(__file__).with_name("results") / "read_only_requests.json"
IDENTITY_KEY = "bench-identity-key"
PAGES = [
    "/v1/products/{product}",
    "/v1/coupons",
    "/v1/shoppers/{shopper}/orders",
    "/v1/merchants/{merchant}/products",
]


def _database(workdir: Path) -> tuple[str, dict]:
    """The loaded SQLite file's URL, and an admin key with sample ids for the pages."""
    from sqlalchemy import text

    from commerce import migrate
    from commerce.db import make_engine, make_session_factory, transaction
    from commerce.identity import Keyring
    from commerce.importer import load_marketplace
    from commerce.services.access import create_api_key
    from crosscart.cli.demo import DEMO_SEED
    from features.synth.generator import generate_marketplace

    url = f"sqlite:///{workdir / 'bench.db'}"
    generate_marketplace(workdir / "market", "tiny", seed=DEMO_SEED)
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    load_marketplace(factory, workdir / "market", keyring=Keyring(IDENTITY_KEY))
    with transaction(factory) as s:
        key = create_api_key(s, "admin")[1]
        product, merchant = s.execute(text("SELECT product_id, merchant_id FROM products LIMIT 1")).one()
        shopper = s.execute(text("SELECT shopper_id FROM orders ORDER BY order_id LIMIT 1")).scalar_one()
    engine.dispose()
    pages = [p.format(product=product, shopper=shopper, merchant=merchant) for p in PAGES]
    return url, {"key": key, "pages": pages, "product": product}


def serve(url: str, mode: str, port: int, workdir: str) -> None:
    """The API in a process of its own (as `crosscart serve` runs it): readers and the writer never
    share its interpreter lock."""
    import uvicorn

    import serving.deps
    from crosscart.settings import Settings
    from serving.app import create_app
    from serving.http import PROTOCOL

    if mode == "immediate":  # before: every request transaction BEGIN IMMEDIATE
        serving.deps.reads_only = lambda request: False
    settings = Settings(
        data_dir=Path(workdir),
        database_url=url,
        identity_key=IDENTITY_KEY,
        rate_limit_per_minute=10**7,
        model_poll_seconds=3600,
        access_log=False,
    )
    registry = NoRegistry()
    app = create_app(settings, model_source=registry, uplift_source=registry, delivery_source=registry)
    uvicorn.run(app, host="127.0.0.1", port=port, http=PROTOCOL, log_level="error", access_log=False)


def write(url: str, product: str, go, done, out) -> None:
    """One writer process (a checkout's one-row stock UPDATE, committed) as fast as it can, with the
    API's busy timeout: its commits and failures into `out`."""
    from sqlalchemy import text

    from commerce.db import make_engine, make_session_factory, transaction
    from crosscart.settings import Settings

    busy = Settings().db_statement_timeout_seconds
    factory = make_session_factory(make_engine(url, statement_timeout=busy))
    commits = failures = 0
    go.wait()
    while not done.is_set():
        try:
            with transaction(factory) as s:
                s.execute(text("UPDATE stock SET quantity = quantity WHERE product_id = :p"), {"p": product})
            commits += 1
        except Exception:  # past the busy timeout
            failures += 1
    out.put((commits, failures))


def run_mode(url: str, mode: str, sample: dict, readers: int, seconds: float, port: int, workdir: Path):
    import multiprocessing

    import httpx

    spawn = multiprocessing.get_context("spawn")
    server = spawn.Process(target=serve, args=(url, mode, port, str(workdir)), daemon=True)
    server.start()
    headers = {"Authorization": f"Bearer {sample['key']}"}
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    with httpx.Client(base_url=base, headers=headers) as warm:
        for page in sample["pages"]:  # the key cached, each page once
            assert warm.get(page).status_code == 200, page
    go, done, out = spawn.Event(), spawn.Event(), spawn.Queue()
    writer = spawn.Process(target=write, args=(url, sample["product"], go, done, out), daemon=True)
    writer.start()
    latencies: list[list[float]] = [[] for _ in range(readers)]
    get_failures = [0] * readers
    stop = threading.Event()

    def read(slot: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            go.wait()
            i = slot
            while not stop.is_set():
                began = time.perf_counter()
                status = client.get(sample["pages"][i % len(sample["pages"])]).status_code
                if status == 200:
                    latencies[slot].append(time.perf_counter() - began)
                else:
                    get_failures[slot] += 1
                i += 1

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    time.sleep(1)  # the writer's process imports and connects before the clock starts
    wall = time.perf_counter()
    go.set()
    time.sleep(seconds)
    stop.set()
    done.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall
    commits, write_failures = out.get(timeout=60)
    writer.join(timeout=10)
    server.terminate()
    server.join(timeout=10)
    lat_ms = np.array([x for per in latencies for x in per]) * 1000
    return {
        "mode": mode,
        "seconds": round(wall, 2),
        "writer_commits_per_s": round(commits / wall, 1),
        "gets_per_s": round(len(lat_ms) / wall, 1),
        "get_p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
        "get_p95_ms": round(float(np.percentile(lat_ms, 95)), 2),
        "get_failures": sum(get_failures),
        "write_failures": write_failures,
    }


def _median(runs: list[dict]) -> dict:
    """Each figure's median over the runs of one mode."""
    return {k: runs[0][k] if k == "mode" else float(np.median([r[k] for r in runs])) for k in runs[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=18630)
    parser.add_argument("--rounds", type=int, default=3, help="alternating before/after runs per mode")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="read-only-requests-"))
    url, sample = _database(workdir)
    results = []
    for i in range(args.rounds):  # alternated, so the host's load drifting between runs hits both
        for mode in ("immediate", "read_only")[:: 1 if i % 2 == 0 else -1]:
            results.append(run_mode(url, mode, sample, args.readers, args.seconds, args.port, workdir))
            print(json.dumps(results[-1]), flush=True)
    before, after = (_median([r for r in results if r["mode"] == m]) for m in ("immediate", "read_only"))
    ratios = {
        "writer_commits_per_s": round(after["writer_commits_per_s"] / before["writer_commits_per_s"], 2),
        "get_p95_ms": round(after["get_p95_ms"] / before["get_p95_ms"], 2),
        "gets_per_s": round(after["gets_per_s"] / before["gets_per_s"], 2),
    }
    summary = {
        "data": "crosscart demo --scale tiny (SQLite file)",
        "readers": args.readers,
        "pages": PAGES,
        "median": [before, after],
        "runs": results,
        "after_over_before": ratios,
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    columns = ["writer_commits_per_s", "gets_per_s", "get_p50_ms", "get_p95_ms", "get_failures",
               "write_failures"]  # fmt: skip
    print(f"{'mode':<10} " + " ".join(f"{c:>21}" for c in columns))
    for r in (before, after):
        print(f"{r['mode']:<10} " + " ".join(f"{r[c]:>21}" for c in columns))
    print("after/before:", json.dumps(ratios))


if __name__ == "__main__":
    main()
