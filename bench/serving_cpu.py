"""Server CPU time per request of GET /v1/shoppers/{id}/recommendations and /health, for this checkout and
any other checkouts of the project (e.g. round 1's code in a detached worktree), measured the same way in
one run.

    .venv/bin/python -m bench.serving_cpu                        # this checkout only
    .venv/bin/python -m bench.serving_cpu --tree ../r1 --rounds 3  # against another checkout, alternating
    .venv/bin/python -m bench.serving_cpu --mode in-process --quick --tree ../r1
    .venv/bin/python -m bench.serving_cpu --quick --http serving.http:HeaderTimeoutH11Protocol
        --http serving.http_httptools:HeaderTimeoutHttpToolsProtocol  # `crosscart serve`'s, h11 vs httptools

Results go to bench/results/serving_cpu_<mode>.json. In `http` mode the figure is the uvicorn server
process's CPU (HTTP parsing and sockets included); in `in-process` mode the app is called directly as
ASGI in a process of the checkout's own (no sockets), so it is the app's own cost, steadier on a loaded
host.

Wall-clock latency on a shared, loaded machine mostly measures the other processes; the server process's
own CPU time (user + system, from the kernel, read before and after a fixed batch of requests) does not.
Each checkout builds its own model and database with its own code and serves them with its own
`bench.serving _serve` (uvicorn, one worker, access log to a file as deployed); the load comes from this
process at a fixed rate on keep-alive connections (bench.serving's open-loop client), and the checkouts
take turns, round by round, so a change in the machine's load hits them alike. The server's idle CPU rate
(background threads) is measured and subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from bench.serving import _open_loop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"  # serving_cpu_<mode>.json
# Run inside each checkout: its own model and API key, with its own code (round 1 kept keys elsewhere).
SETUP = """
import sys
from pathlib import Path
from bench.serving import fit_model
from commerce.db import Base, make_engine, make_session_factory, transaction
try:
    from commerce.services.access import create_api_key
except ImportError:
    from commerce.access import create_api_key
import commerce.all_models

workdir, products, shoppers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fit_model(products, shoppers, workdir / "model")
engine = make_engine(f"sqlite:///{workdir / 'bench.db'}")
Base.metadata.create_all(engine)
with transaction(make_session_factory(engine)) as s:
    _, key = create_api_key(s, "storefront", name="bench")
print(key)
"""


# Run inside each checkout: its bench server's app called directly as ASGI (no sockets, no uvicorn), so
# the figure is the app's own cost (middleware, routing, page, access line), repeatable to a few percent.
IN_PROCESS = """
import asyncio, cProfile, json, sys, time
from pathlib import Path
import uvicorn

apps = []
uvicorn.run = lambda app, **kw: apps.append(app)  # bench.serving.serve builds the app, then runs it here
from bench.serving import serve

workdir, products, shoppers, key = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
mix, requests, profile = json.loads(Path(sys.argv[5]).read_text()), int(sys.argv[6]), sys.argv[7]
serve(workdir, 0, products, shoppers)
app = apps[0]


async def call(path):
    route, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": route, "raw_path": route.encode(), "query_string": query.encode(),
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer " + key.encode())],
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], sent[-1].get("body", b"")


async def main():
    async with app.router.lifespan_context(app):
        while True:
            status, body = await call("/ready")
            if status == 200 and json.loads(body)["model_version"] is not None:
                break
            await asyncio.sleep(0.5)
        out = {}
        for name, paths in mix.items():
            for path in paths[: len(paths) // 4]:  # warm-up
                await call(path)
            profiler = cProfile.Profile() if profile else None
            start, start_thread = time.process_time(), time.thread_time()
            if profiler:
                profiler.enable()
            for i in range(requests):
                status, _ = await call(paths[i % len(paths)])
                assert status == 200, status
            if profiler:
                profiler.disable()
                profiler.dump_stats(f"{profile}.{name}")
            cpu, loop = time.process_time() - start, time.thread_time() - start_thread
            out[name] = {
                "cpu_us_per_request": round(cpu / requests * 1e6, 1),
                "loop_thread_cpu_us_per_request": round(loop / requests * 1e6, 1),
            }
        print(json.dumps(out))


asyncio.run(main())
"""


def _describe(tree: Path) -> str:
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=tree, capture_output=True, text=True)
    return f"{tree.name}@{out.stdout.strip()}"


class Checkout:
    """One checkout with its own model, database and API key, built by its own code."""

    def __init__(self, tree: Path, products: int, shoppers: int):
        self.tree, self.label, self.size = tree, _describe(tree), (products, shoppers)
        self.workdir = Path(tempfile.mkdtemp(prefix="crosscart-cpu-"))
        self.env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1"}
        self.key = self.python(SETUP, self.workdir, products, shoppers).splitlines()[-1]

    def python(self, code: str, *args) -> str:
        """Run `code` in this checkout; its log (the access lines too) goes to a file, as deployed."""
        command = [sys.executable, "-c", code, *map(str, args)]
        log = self.workdir / "python.log"
        with log.open("w") as sink:
            done = subprocess.run(
                command, cwd=self.tree, env=self.env, stdout=subprocess.PIPE, stderr=sink, text=True
            )
        if done.returncode != 0:
            raise RuntimeError(f"{self.label} failed:\n{log.read_text()[-3000:]}")
        return done.stdout.strip()

    def in_process(self, mix: dict[str, list[str]], requests: int, profile: Path | None) -> dict:
        """App CPU microseconds per request, the app called directly (IN_PROCESS)."""
        paths = self.workdir / "paths.json"
        paths.write_text(json.dumps(mix))
        out = self.python(IN_PROCESS, self.workdir, *self.size, self.key, paths, requests, profile or "")
        return json.loads(out.splitlines()[-1])

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class Server:
    """A checkout's bench server (`bench.serving _serve`, with uvicorn's HTTP protocol `http` if given),
    its log in a file."""

    def __init__(self, checkout: Checkout, port: int, http: str | None = None):
        self.label, self.key = checkout.label + (f" http={http}" if http else ""), checkout.key
        self.url = f"http://127.0.0.1:{port}"
        products, shoppers = checkout.size
        command = [
            sys.executable, "-m", "bench.serving", "_serve", "--workdir", str(checkout.workdir),
            "--port", str(port), "--products", str(products), "--shoppers", str(shoppers),
        ]  # fmt: skip
        if http:
            command += ["--http", http]
        self.log = checkout.workdir / f"server-{port}.log"
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(command, cwd=checkout.tree, env=checkout.env, stderr=sink)
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self, timeout: float = 1800.0) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log.read_text()[-2000:]}")
            try:
                ready = httpx.get(self.url + "/ready", timeout=2)
                if ready.status_code == 200 and ready.json()["model_version"] is not None:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"{self.label} did not become ready")

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def idle_rate(self, seconds: float = 3.0) -> float:
        """CPU seconds per second with no requests (refresh threads, timers)."""
        before, start = self.cpu(), time.perf_counter()
        time.sleep(seconds)
        return (self.cpu() - before) / (time.perf_counter() - start)

    def measure(self, paths: list[str], rate: float) -> dict:
        """Server CPU microseconds per request over `paths` sent at `rate` per second."""
        headers = {"Authorization": f"Bearer {self.key}"}
        idle = self.idle_rate()
        before, start = self.cpu(), time.perf_counter()
        latencies = asyncio.run(_open_loop(self.url, paths, rate, headers))
        used, wall = self.cpu() - before, time.perf_counter() - start
        return {
            "cpu_us_per_request": round((used - idle * wall) / len(paths) * 1e6, 1),
            "wall_p50_ms": round(float(np.percentile(latencies, 50)), 3),
        }

    def stop(self) -> int:
        """Stop the server; returns the access lines it wrote."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        with self.log.open() as lines:
            return sum(1 for line in lines if line.startswith('{"') and '"event":"request"' in line)


def _alternating(items: list, r: int) -> list:
    """Round `r`'s order: forwards, then backwards, so neither side always goes first."""
    return items if r % 2 == 0 else items[::-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout")
    parser.add_argument("--mode", choices=["http", "in-process"], default="http")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000, help="per endpoint and round")
    parser.add_argument("--rate", type=float, default=200.0, help="http mode")
    parser.add_argument("--quick", action="store_true", help="20k products, 5k shoppers")
    parser.add_argument("--port", type=int, default=18190, help="http mode: first port, one per server")
    parser.add_argument(
        "--http",
        action="append",
        default=[],
        help="http mode: uvicorn's HTTP protocol (auto, h11, httptools or a class's import path, as in "
        "serving.http.PROTOCOL); repeat to compare, one server each",
    )
    parser.add_argument("--profile", type=Path, help="in-process mode: cProfile output file prefix")
    parser.add_argument("--output", type=Path, help="default: bench/results/serving_cpu_<mode>.json")
    args = parser.parse_args(argv)
    products, shoppers = (20_000, 5_000) if args.quick else (100_000, 20_000)
    rng = np.random.default_rng(3)
    filters = ["", "&fulfillment=bonded", "&category=c3", "&category=c5-5&fulfillment=bonded"]
    mix = {
        "recommendations": [
            f"/v1/shoppers/s{rng.integers(0, shoppers)}/recommendations?n=10{filters[i % 4]}"
            for i in range(args.requests)
        ],
        "health": ["/health"] * args.requests,
    }
    checkouts = [Checkout(tree, products, shoppers) for tree in [ROOT, *(t.resolve() for t in args.tree)]]
    runs: dict[str, dict[str, list]] = {}
    access_lines = {}
    try:
        if args.mode == "in-process":
            for r in range(args.rounds):
                for c in _alternating(checkouts, r):
                    profile = args.profile and args.profile.with_name(f"{args.profile.name}-{c.tree.name}")
                    for name, cpu in c.in_process(mix, args.requests, profile).items():
                        runs.setdefault(c.label, {}).setdefault(name, []).append(cpu)
                    print(c.label, {n: v[-1] for n, v in runs[c.label].items()}, flush=True)
        else:
            pairs = [(c, http) for c in checkouts for http in args.http or [None]]
            servers = [Server(c, args.port + i, http) for i, (c, http) in enumerate(pairs)]
            try:
                for server in servers:
                    server.wait_ready()
                for server in servers:  # warm-up: caches, lazily built masks, first connections
                    for paths in mix.values():
                        server.measure(paths[: args.requests // 4], args.rate)
                for r in range(args.rounds):
                    for server in _alternating(servers, r):
                        for name, paths in mix.items():
                            runs.setdefault(server.label, {}).setdefault(name, []).append(
                                server.measure(paths, args.rate)
                            )
                            print(server.label, name, runs[server.label][name][-1], flush=True)
            finally:
                for server in servers:
                    access_lines[server.label] = server.stop()
    finally:
        for c in checkouts:
            c.remove()
    how = (
        "the app called directly as ASGI (no sockets), the calling process's CPU time"
        if args.mode == "in-process"
        else f"the uvicorn server process at {args.rate:g} rps, its idle rate subtracted"
    )
    result = {
        "mode": args.mode,
        "measure": f"CPU time (user+system) per request: {how}",
        "catalog_products": products,
        "shoppers": shoppers,
        "requests_per_round": args.requests,
        "access_log_lines": access_lines,
        "median_cpu_us_per_request": {
            label: {name: float(np.median([m["cpu_us_per_request"] for m in ms])) for name, ms in by.items()}
            for label, by in runs.items()
        },
        "runs": runs,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    output = args.output or RESULTS / f"serving_cpu_{args.mode.replace('-', '_')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["median_cpu_us_per_request"], indent=1))


if __name__ == "__main__":
    main()
