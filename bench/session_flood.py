"""A shopper key flooding live sessions: what one 1,000-visit event batch costs, how many Redis keys a
flood of invented session ids leaves, and how a merchant's stock PUT fares meanwhile.

    .venv/bin/python -m bench.session_flood [--seconds 20] [--rate 0] [--redis redis://127.0.0.1:6379/13]
        [--event-quota 6000]

The API (the tiny marketplace of tests/serving in a PostgreSQL schema of its own, live sessions in the
given Redis database, which must hold none) runs in a child process under uvicorn; this process sends
the load: 3 threads posting batches of 1,000 views in new session ids with a shopper key (as fast as
answered, or `--rate` batches/s in all), while a merchant sets a stock level every 50 ms. Prints one
JSON object; nothing is written to bench/results. Session keys and the schema are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from crosscart.settings import Settings

PORT = 8731
BATCH = 1000


def _serve(workdir: Path, url: str, redis_url: str, event_quota: int) -> None:
    import uvicorn

    from crosscart.settings import Settings
    from serving.app import create_app
    from tests.serving.conftest import ScriptedSource

    settings = Settings(
        data_dir=workdir,
        database_url=url,
        redis_url=redis_url,
        rate_limit_per_minute=1_000_000,
        rate_limit_anonymous_per_minute=1_000_000,
        event_rate_limit_per_minute=event_quota,
        model_poll_seconds=3600,
        access_log=False,
    )
    app = create_app(
        settings,
        model_source=ScriptedSource(),
        uplift_source=ScriptedSource(),
        delivery_source=ScriptedSource(),
        session_model_source=ScriptedSource(),
        start_background=False,
    )
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")


def _seed(url: str) -> dict[str, str]:
    import commerce.all_models  # noqa: F401  (every table)
    from commerce.db import Base, make_engine, make_session_factory, transaction
    from commerce.services.access import create_api_key
    from tests.serving.conftest import seed_marketplace

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    seed_marketplace(factory)
    with transaction(factory) as s:
        keys = {
            "shopper": create_api_key(s, "shopper", shopper_id="s1")[1],
            "merchant": create_api_key(s, "merchant", merchant_id="m1")[1],
        }
    engine.dispose()
    return keys


def _batch() -> dict:
    """1,000 views, each in a session id never seen before."""
    now = datetime.now(UTC).isoformat()
    return {
        "events": [
            {
                "event_id": uuid.uuid4().hex,
                "ts": now,
                "shopper_id": "s1",
                "event_type": "view",
                "product_id": "p02",
                "session_id": uuid.uuid4().hex,
            }
            for _ in range(BATCH)
        ]
    }


def _quantiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)  # noqa: E731
    return {"n": len(ordered), "p50": pick(0.5), "p90": pick(0.9), "max": round(ordered[-1], 3)}


def measure(
    seconds: float, redis_url: str, postgres_url: str, rate: float, event_quota: int, flooders: int = 3
) -> dict:
    import httpx
    import redis

    store = redis.Redis.from_url(redis_url)
    if next(store.scan_iter("crosscart:session*"), None) is not None:
        raise SystemExit(f"{redis_url} holds live sessions already")
    from sqlalchemy import create_engine, text

    workdir = Path(tempfile.mkdtemp(prefix="crosscart-session-flood-"))
    schema = f"flood_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    keys = _seed(url)
    serve_args = (workdir, url, redis_url, event_quota)
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=serve_args)
    server.start()
    base = f"http://127.0.0.1:{PORT}"
    shopper = {"Authorization": f"Bearer {keys['shopper']}"}
    merchant = {"Authorization": f"Bearer {keys['merchant']}"}
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(1200):  # a loaded host takes a while to start the API
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            memory_before = store.info("memory")["used_memory"]
            quiet = []
            for _ in range(6):  # the first warms up
                body = _batch()
                started = time.perf_counter()
                answer = client.post("/v1/events", json=body, headers=shopper)
                quiet.append(time.perf_counter() - started)
                assert answer.status_code == 202, answer.text

            stop = threading.Event()
            batches = {202: 0, 429: 0}

            period = flooders / rate if rate else 0.0  # each client's pace; 0: as fast as answered

            def flood():
                with httpx.Client(base_url=base, timeout=60) as own:
                    due = time.monotonic()
                    while not stop.is_set():
                        status = own.post("/v1/events", json=_batch(), headers=shopper).status_code
                        batches[status] = batches.get(status, 0) + 1
                        due += period
                        time.sleep(max(0.0, due - time.monotonic()))

            threads = [threading.Thread(target=flood) for _ in range(flooders)]
            for t in threads:
                t.start()
            stock = []
            deadline = time.monotonic() + seconds
            quantity = 5
            while time.monotonic() < deadline:
                quantity = 6 if quantity == 5 else 5
                started = time.perf_counter()
                answer = client.put(
                    "/v1/products/p02/stock/ow1", json={"quantity": quantity}, headers=merchant
                )
                stock.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                time.sleep(0.05)
            stop.set()
            for t in threads:
                t.join()
        session_keys = sum(1 for _ in store.scan_iter("crosscart:session*", count=10_000))
        result = {
            "batch_seconds_quiet": [round(s, 3) for s in quiet[1:]],
            "flood_seconds": seconds,
            "flood_rate": rate or "closed loop",
            "event_quota_per_minute": event_quota,
            "flood_batches": sum(batches.values()),
            "flood_batches_recorded": batches[202],
            "flood_batches_refused": batches[429],
            "redis_keys_after": store.dbsize(),
            "session_keys_after": session_keys,
            "redis_memory_mb_added": round((store.info("memory")["used_memory"] - memory_before) / 1e6, 1),
            "stock_put_seconds_during_flood": _quantiles(stock),
        }
    finally:
        server.terminate()
        server.join()
        for name in store.scan_iter("crosscart:session*", count=10_000):
            store.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=0.0, help="batches/s in all (0: closed loop)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--event-quota",
        type=int,
        default=Settings.model_fields["event_rate_limit_per_minute"].default,
        help="the shopper key's events a minute (CROSSCART_EVENT_RATE_LIMIT_PER_MINUTE; 10**9: none)",
    )
    args = parser.parse_args()
    print(json.dumps(measure(args.seconds, args.redis, args.postgres, args.rate, args.event_quota)))


if __name__ == "__main__":
    main()
