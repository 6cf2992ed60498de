"""Per-request cost of the API's middleware stack, in process: the ASGI app is called directly (no sockets,
no HTTP parsing), so what is measured is the app's own Python work per request.

    .venv/bin/python -m bench.middleware            # prints a table and one JSON object

Three variants of the same app are measured in alternating batches (a busy host slows them alike):
every middleware (as deployed), every middleware but the access log, and only the middleware round 1
had (the recommendation fast path and metrics, now both in serving/edge.py's layer, and the body-size
limit). Times
are CPU time of the serving thread (time spent waiting for a core does not count), the median over
batches. The access log writes to a file, as to a log collector. Nothing is written to bench/results:
compare the variants of one run, on a quiet host for absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROUND_1 = {"RequestEdge", "BodySizeLimit"}  # the unlogged app's RequestEdge: fast path and metrics
PATHS = {
    "/health": ("/health", False),
    "recommendations (fast path)": ("/v1/shoppers/s1/recommendations", True),
    "rankings (FastAPI route)": ("/v1/rankings", True),
}


class _Unserved:
    """A model registry with no champion: the app serves the popularity fallback."""

    def champion(self):
        return None

    def load(self, version):
        raise LookupError(version)


def build(workdir: Path, access_log: bool):
    import commerce.all_models  # noqa: F401  (every table)
    from commerce.db import Base, make_engine, make_session_factory, transaction
    from commerce.services.access import create_api_key
    from crosscart.settings import Settings
    from serving.app import create_app

    url = f"sqlite:///{workdir / 'bench.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with transaction(make_session_factory(engine)) as s:
        _, key = create_api_key(s, "storefront", name=f"bench-{access_log}")
    settings = Settings(data_dir=workdir, database_url=url, model_poll_seconds=3600, access_log=access_log)
    app = create_app(
        settings,
        session_factory=make_session_factory(engine),
        model_source=_Unserved(),
        uplift_source=_Unserved(),
        delivery_source=_Unserved(),
        session_model_source=_Unserved(),
        catalog_refresh_seconds=3600,
        start_background=False,
    )
    return app, key


async def _start(app) -> None:
    """Run the app's lifespan start-up (catalog, models) and leave it running."""
    started, messages = asyncio.Event(), asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})

    async def send(message):
        if message["type"].startswith("lifespan.startup"):
            started.set()

    asyncio.get_running_loop().create_task(app({"type": "lifespan", "state": {}}, messages.get, send))
    await started.wait()


async def per_request(app, path: str, headers: list, n: int) -> float:
    """CPU seconds per request over `n` calls of the ASGI app."""

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    start = time.thread_time()
    for _ in range(n):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": list(headers), "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        await app(scope, receive, send)
    return (time.thread_time() - start) / n


async def run(batches: int, batch: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="crosscart-middleware-"))
    try:
        return await _measure(workdir, batches, batch)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _measure(workdir: Path, batches: int, batch: int) -> dict:
    logged, key = build(workdir, access_log=True)
    unlogged, _ = build(workdir, access_log=False)
    ours = next(h for h in logging.getLogger().handlers if getattr(h, "_crosscart", False))
    ours.setStream((workdir / "server.log").open("w"))
    logging.getLogger("serving").setLevel(logging.WARNING)  # start-up chatter is not the subject
    for app in (logged, unlogged):
        await _start(app)
    deployed = unlogged.user_middleware
    round_1 = [m for m in deployed if m.cls.__name__ in ROUND_1]
    variants = {
        "deployed": (logged, None),
        "no access log": (unlogged, deployed),
        "round-1 set": (unlogged, round_1),
    }
    auth = [(b"authorization", f"Bearer {key}".encode())]
    samples: dict[tuple[str, str], list[float]] = {}
    for batch_number in range(batches + 1):  # the first is a warm-up (key cache, lazy imports)
        for variant, (app, stack) in variants.items():
            if stack is not None:  # the same app with another middleware stack, rebuilt on its next call
                app.user_middleware, app.middleware_stack = stack, None
            for name, (path, keyed) in PATHS.items():
                cost = await per_request(app, path, auth if keyed else [], batch)
                if batch_number:
                    samples.setdefault((variant, name), []).append(cost)
    return {
        variant: {name: round(sorted(samples[variant, name])[batches // 2] * 1e6, 1) for name in PATHS}
        for variant in variants
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=15, help="alternations of the three variants")
    parser.add_argument("--batch", type=int, default=200, help="requests per path per batch")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.batches, args.batch))
    table = Table(title="CPU us per request, in process (median over batches)")
    table.add_column("request")
    for variant in result:
        table.add_column(variant)
    for name in PATHS:
        table.add_row(name, *(f"{result[v][name]:.1f}" for v in result))
    Console().print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
