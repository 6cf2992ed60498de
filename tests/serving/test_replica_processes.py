"""Issue 13 item 4 with real processes: two uvicorn API processes over one PostgreSQL and one Redis behave
as one service (a key revoked on one is refused by the other within 1 s; the rate limit is shared; an
exposure is logged once), and `crosscart serve --workers 2` reports both workers' requests on /metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from commerce.db import transaction
from commerce.services.experiments import create_experiment, exposure_counts, start_experiment
from tests.conftest import POSTGRES_URL, fresh_mlflow_db
from tests.resilience.conftest import make_keys, seeded_factory
from tests.serving.conftest import IDENTITY_KEY, auth

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # ~50 s each: process start-up dominates
REDIS_URL = "redis://127.0.0.1:6379/13"
PORTS = (18131, 18132, 18133)  # issue 13's range
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared(tmp_path, postgres_reason, empty_mlflow_db):
    """A PostgreSQL schema seeded with the serving marketplace, keys and a running experiment; Redis db 13."""
    if postgres_reason is not None:
        pytest.skip(postgres_reason)
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=0.5).ping()
    except redis.exceptions.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    schema = f"wt_i13_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    factory = seeded_factory(url)
    keys = make_keys(factory)
    with transaction(factory) as s:
        create_experiment(
            s, "replica-exp", [("control", 1, {}), ("treatment", 1, {"model_alias": "champion"})]
        )
        start_experiment(s, "replica-exp")
    # the registry's tables, made before the replicas start rather than raced by them
    mlflow_uri = fresh_mlflow_db(empty_mlflow_db, tmp_path / "mlflow.db")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
        "CROSSCART_DATABASE_URL": url,
        "CROSSCART_REDIS_URL": REDIS_URL,
        "CROSSCART_MLFLOW_URI": mlflow_uri,
        "CROSSCART_DATA_DIR": str(tmp_path),
        "CROSSCART_IDENTITY_KEY": IDENTITY_KEY,
        "CROSSCART_RATE_LIMIT_PER_MINUTE": "4",
        "CROSSCART_LOG_LEVEL": "warning",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    yield {"factory": factory, "keys": keys, "env": env, "tmp": tmp_path}
    factory.kw["bind"].dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


class Api:
    """One API server subprocess (its log in `log`), ready once /ready says so."""

    def __init__(self, command: list[str], env: dict, port: int, log: Path):
        self.base, self.log = f"http://127.0.0.1:{port}", log
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )

    def wait_ready(self, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"API exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"API not ready in {seconds} s:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.base + path, timeout=10, **kwargs)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _uvicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory", "--port", str(port)]


def _wait(predicate, seconds: float, step: float = 0.02) -> float | None:
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if predicate():
            return time.perf_counter() - start
        time.sleep(step)
    return None


def test_two_api_processes_behave_as_one_service(shared):
    keys, tmp = shared["keys"], shared["tmp"]
    a = Api(_uvicorn(PORTS[0]), shared["env"], PORTS[0], tmp / "a.log")
    b = Api(_uvicorn(PORTS[1]), shared["env"], PORTS[1], tmp / "b.log")
    try:
        a.wait_ready()
        b.wait_ready()
        storefront, marketer, admin = auth(keys["storefront"]), auth(keys["marketer"]), auth(keys["admin"])

        # The rate limit is shared: 4 a minute for the marketer key, whichever replica counts.
        statuses = [replica.get("/v1/rankings", headers=marketer).status_code for replica in (a, b) * 3]
        assert statuses == [200, 200, 200, 200, 429, 429]
        refused = b.get("/v1/rankings", headers=marketer)
        assert (
            refused.headers["ratelimit-policy"] == '"per-key";q=4;w=60' and "retry-after" in refused.headers
        )

        # The same exposure, received by both replicas, is logged once.
        pages = [replica.get("/v1/shoppers/s1/recommendations", headers=storefront) for replica in (a, b)]
        assert [p.status_code for p in pages] == [200, 200]
        variants = {p.json()["experiments"]["replica-exp"] for p in pages}
        assert len(variants) == 1
        with shared["factory"]() as s:
            assert _wait(lambda: sum(exposure_counts(s, "replica-exp").values()) >= 1, 10, 0.2) is not None
            time.sleep(1.5)  # both writers have flushed (every second)
            counts = exposure_counts(s, "replica-exp")
        assert counts[variants.pop()] == 1 and sum(counts.values()) == 1

        # A key revoked on one replica is refused by the other within a second.
        assert b.get("/v1/rankings", headers=storefront).status_code == 200  # cached on b
        key_id = next(
            k["id"] for k in a.get("/v1/api-keys", headers=admin).json()["items"] if k["role"] == "storefront"
        )
        revoked = httpx.delete(f"{a.base}/v1/api-keys/{key_id}", headers=admin, timeout=10)
        assert revoked.status_code == 200
        after = _wait(lambda: b.get("/v1/rankings", headers=storefront).status_code == 401, 1.0)
        assert after is not None and after < 1.0
        print(f"revoked on a, refused by b after {after * 1000:.0f} ms")
    finally:
        a.stop()
        b.stop()


def _requests_per_worker(directory: Path) -> dict[str, float]:
    """crosscart_http_requests per worker, read from prometheus_client's multiprocess files."""
    from prometheus_client.multiprocess import MultiProcessCollector

    totals = {}
    for path in directory.glob("counter_*.db"):
        metrics = MultiProcessCollector._read_metrics([str(path)])
        totals[path.stem] = sum(
            sample.value
            for metric in metrics.values()
            if metric.name == "crosscart_http_requests"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    return totals


def test_metrics_from_serve_with_two_workers_count_both_workers(shared):
    directory = shared["tmp"] / "metrics"
    env = {**shared["env"], "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    command = [
        sys.executable, "-c", "from crosscart.cli import app; app()",
        "serve", "--workers", "2", "--port", str(PORTS[2]), "--log-level", "warning",
    ]  # fmt: skip
    api = Api(command, env, PORTS[2], shared["tmp"] / "serve.log")
    try:
        api.wait_ready()
        sent = 60

        # /docs: served by the app in every worker, ready or not (serve's HTTP protocol answers /health
        # before the app, uncounted; /ready is 503 from a worker still loading, and waiting asked it)
        def docs(_):  # a new connection each: the kernel spreads them over the workers
            return httpx.get(f"{api.base}/docs", timeout=10).status_code

        with ThreadPoolExecutor(6) as pool:
            assert set(pool.map(docs, range(sent))) == {200}
        per_worker = _requests_per_worker(directory)
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
        text_ = api.get("/metrics").text
        docs_line = next(
            line
            for line in text_.splitlines()
            if line.startswith("crosscart_http_requests_total{") and 'route="/docs"' in line
        )
        assert float(docs_line.rsplit(" ", 1)[1]) == sent
        assert 'crosscart_model_version_info{model="recommender"' in text_
        # the oldest data of the workers' (livemin), their most failures in a row (livemax)
        refreshed = [
            float(line.rsplit(" ", 1)[1])
            for line in text_.splitlines()
            if line.startswith('crosscart_refresh_last_success_timestamp_seconds{loop="catalog"}')
        ]
        assert len(refreshed) == 1 and 0 < time.time() - refreshed[0] < 120, text_
        assert 'crosscart_refresh_consecutive_failures{loop="search"} 0.0' in text_
    finally:
        api.stop()
