"""Memory over a long-running process: Python objects alive (after a full collection) and RSS across
app start/stop cycles, many mixed requests, and recommender reloads with catalog and experiment refreshes.

    .venv/bin/python -m bench.memory                  # builds the tiny demo; writes bench/results/memory.json
    .venv/bin/python -m bench.memory --data-dir DIR   # an existing `crosscart demo` data dir

Everything runs in this process, through `fastapi.testclient.TestClient` (its lifespan included), on the
demo's database and MLflow registry. Growth is quoted per step and as a ratio of what the first step of
the same phase added (a bounded structure fills early, then stops growing: the ratio falls toward 0;
a leak adds the same amount every step: the ratio stays near 1).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import re
import time
from pathlib import Path

import psutil

from bench.console import tiny_demo_dir

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def sample() -> tuple[int, float]:
    """(objects the collector tracks, RSS in MB) after a full collection and, on glibc, after handing
    freed heap pages back to the system: without that, the RSS of a process running 40 threads (each
    with its own malloc arena) holds memory Python freed long ago, and reads as a leak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS as it is
        pass
    return len(gc.get_objects()), psutil.Process().memory_info().rss / 2**20


def phase(name: str, samples: list[tuple[int, int, float]]) -> dict:
    """Growth of a phase sampled as (step, objects, RSS MB): the first interval against the last one."""
    (s0, o0, r0), (s1, o1, _) = samples[0], samples[1]
    (s2, o2, r2), (s3, o3, r3) = samples[-2], samples[-1]
    first = (o1 - o0) / (s1 - s0)
    last = (o3 - o2) / (s3 - s2)
    row = {
        "phase": name,
        "steps": s3,
        "objects_start": o0,
        "objects_end": o3,
        "rss_mb_start": round(r0, 1),
        "rss_mb_end": round(r3, 1),
        "objects_per_step_first": round(first, 2),
        "objects_per_step_last": round(last, 2),
        "last_vs_first": round(last / first, 3) if first else None,
        "rss_mb_per_step_last": round((r3 - r2) / (s3 - s2), 4),
        "samples": [{"step": s, "objects": o, "rss_mb": round(r, 1)} for s, o, r in samples],
    }
    print(
        f"{name:<28} {s3:>7} {o0:>10} {o3:>10} {first:>12.2f} {last:>12.2f} "
        f"{row['last_vs_first'] if first else float('nan'):>8} {r0:>8.1f} {r3:>8.1f}"
    )
    return row


class CyclingSource:
    """The registry's champion presented as a new version on every check, loaded from its artifact each
    time: a real reload (download, deserialise, warm-up, swap) without registering 50 versions."""

    def __init__(self, real, version: str):
        self.real, self.version, self.checks = real, version, 0

    def champion(self) -> str:
        self.checks += 1
        return f"{self.version}.{self.checks}"

    def for_alias(self, alias: str):
        return self.real.for_alias(alias)

    def load(self, version: str):
        return self.real.load(self.version)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="A demo data dir (default: build tiny).")
    parser.add_argument("--cycles", type=int, default=12, help="app start/stop cycles")
    parser.add_argument("--requests", type=int, default=20_000, help="mixed requests on one app")
    parser.add_argument("--reloads", type=int, default=50, help="recommender reloads (+ refreshes)")
    args = parser.parse_args()

    data_dir, tmp = tiny_demo_dir(args.data_dir)
    import json
    import logging

    from fastapi.testclient import TestClient

    from crosscart.settings import Settings
    from serving.app import create_app
    from serving.model_store import MlflowModelSource

    logging.disable(logging.INFO)  # 20,000 access lines would be measured too
    document = json.loads((data_dir / "demo-keys.json").read_text())
    keys = {label: k["key"] for label, k in document["keys"].items()}
    settings = Settings(data_dir=data_dir, rate_limit_per_minute=10**7, rate_limit_anonymous_per_minute=10**7)
    rows = []
    print(f"{'phase':<28} {'steps':>7} {'obj start':>10} {'obj end':>10} {'obj/step 1st':>12} "
          f"{'obj/step last':>12} {'last/1st':>8} {'RSS MB 0':>8} {'RSS MB 1':>8}")  # fmt: skip

    def cycle() -> None:
        with TestClient(create_app(settings, start_background=False, warm_shoppers=0)) as client:
            for page in ("/health", "/ready", "/docs", "/v1/products?limit=5", "/openapi.json"):
                client.get(page)

    cycle()  # imports, MLflow's store for this registry, templates
    samples = [(0, *sample())]
    for i in range(1, args.cycles + 1):
        cycle()
        if i in (1, args.cycles // 2, args.cycles - 1, args.cycles):
            samples.append((i, *sample()))
    rows.append(phase("app start/stop cycles", samples))

    cpu = time.process_time()
    app = create_app(settings, start_background=False, warm_shoppers=200)
    with TestClient(app) as client:
        state = app.state.serving
        catalog = state.catalog.current
        shoppers = sorted(catalog.purchased)[:2000] if catalog is not None else ["s"]
        products = sorted(catalog.product_ids.tolist())[:2000] if catalog is not None else ["p"]
        words = sorted({w for p in products[:300] for w in re.findall(r"[a-z]{4,}", p.lower())}) or ["item"]
        rng = random.Random(7)
        storefront = {"Authorization": f"Bearer {keys['storefront']}"}

        def request(i: int) -> None:
            kind = i % 6
            if kind == 0:
                client.get(f"/v1/shoppers/{rng.choice(shoppers)}/recommendations", headers=storefront)
            elif kind == 1:  # ids nobody has: caches keyed by caller input must not keep them all
                client.get(f"/v1/shoppers/unknown-{i}/recommendations", headers=storefront)
            elif kind == 2:
                client.get(f"/v1/search?q={rng.choice(words)}+{i}", headers=storefront)
            elif kind == 3:
                client.get(f"/v1/products/{rng.choice(products)}", headers=storefront)
            elif kind == 4:
                client.get(f"/v1/products/{rng.choice(products)}/similar", headers=storefront)
            else:  # a fresh bad key each time, from one address
                client.get("/v1/products?limit=3", headers={"Authorization": f"Bearer cc_bad{i:040d}"})

        for i in range(500):
            request(i)
        samples = [(0, *sample())]
        marks = {args.requests // 4, args.requests // 2, args.requests - args.requests // 4, args.requests}
        for i in range(1, args.requests + 1):
            request(500 + i)
            if i in marks:
                samples.append((i, *sample()))
        rows.append(phase("mixed requests", samples))
        snapshot, failures = state.models.current, state.auth_failures._failures
        bounded = {  # what the requests filled, against each structure's bound
            "search results": (len(app.state.search._cache), app.state.search._cache.maxsize),
            "unknown keys": (len(state.principals._unknown), state.principals._unknown.maxsize),
            "failed-key addresses": (len(failures), failures.maxsize),
            "memoised scores": (len(snapshot._scores), snapshot.cache_size),
        }
        for name, (filled, bound) in bounded.items():
            print(f"  {name:<22} {filled:>7} of {bound:>7}")
        rows[-1]["bounded"] = {name: {"entries": f, "bound": b} for name, (f, b) in bounded.items()}

        source = CyclingSource(
            MlflowModelSource(settings.resolved_mlflow_uri, settings.model_name, settings.model_alias),
            state.models.current.version,
        )
        state.models.source = source

        def reload() -> None:
            assert state.models.refresh(), state.models.broken
            state.catalog.refresh()
            state.experiments.refresh()
            client.get(f"/v1/shoppers/{shoppers[0]}/recommendations", headers=storefront)

        reload()
        samples = [(0, *sample())]
        for i in range(1, args.reloads + 1):
            reload()
            if i in (1, args.reloads // 2, args.reloads - 1, args.reloads):
                samples.append((i, *sample()))
        rows.append(phase("recommender reloads", samples))
    cpu = time.process_time() - cpu
    print(f"\n{state.models.swaps} swaps; requests and reloads took {cpu:.0f} CPU-s")
    from bench import write_result

    write_result("memory", {"data": "crosscart demo --scale tiny", "phases": rows, "cpu_seconds": round(cpu)})
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
