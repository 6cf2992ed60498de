"""Writers beside the serving catalog refresh on SQLite, before and after `commerce.db.read_only`.

    .venv/bin/python -m bench.sqlite_read_only [--workdir DIR] [--refreshes 3]

Loads the `demo` marketplace (`crosscart demo`'s seed, every event: what `make run` serves) into a
SQLite file once, then per mode runs `refreshes` catalog reloads (`serving.catalog_db.load_catalog`) on
one thread while a writer (a one-row stock UPDATE, as a checkout's) and the experiments refresh loop on
two others, with the API's busy timeout. `immediate` is the old behaviour (every transaction BEGIN
IMMEDIATE), `read_only` the new one. Counted, not timed: how many writer commits and experiments
refreshes began and ended while a reload's transaction was open (its queries; the snapshot is built
after it), and how many failed; the reload's CPU time (thread_time), whole and inside its transaction.
Writes bench/results/sqlite_read_only.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from sqlalchemy import text

RESULTS = Path(__file__).with_name("results") / "sqlite_read_only.json"


def _database(workdir: Path) -> str:
    from commerce import migrate
    from commerce.db import make_engine, make_session_factory
    from commerce.identity import Keyring
    from commerce.importer import load_marketplace
    from crosscart.cli.demo import DEMO_SEED
    from features.synth.generator import generate_marketplace

    path = workdir / "demo.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        generate_marketplace(workdir / "market", "demo", seed=DEMO_SEED)
        migrate.upgrade(url)
        engine = make_engine(url)
        load_marketplace(make_session_factory(engine), workdir / "market", keyring=Keyring("bench-key"))
        engine.dispose()
    return url


def run_mode(url: str, mode: str, refreshes: int) -> dict:
    from sqlalchemy.exc import OperationalError

    from commerce.db import make_engine, make_session_factory, transaction
    from crosscart.settings import Settings
    from serving import ab, catalog_db

    settings = Settings()
    busy = settings.db_statement_timeout_seconds  # the API's busy timeout
    factory = make_session_factory(make_engine(url, statement_timeout=busy))
    experiments = ab.RunningExperiments(factory, settings.model_alias)  # the API's refresh loop's loader
    with factory() as s:
        product = s.execute(text("SELECT product_id FROM stock ORDER BY id LIMIT 1")).scalar_one()
    reloading = [0]  # the number of the reload running now, 0 between reloads
    done, counts = threading.Event(), {"writes": [0, 0], "experiments": [0, 0]}  # [inside, failed]

    def loop(name: str, work) -> None:
        while not done.is_set():
            at = reloading[0]
            try:
                work()
            except OperationalError:  # past the busy timeout: what make run logged
                counts[name][1] += 1  # (any other error, a renamed loader's, ends the thread loudly)
                continue
            if at and reloading[0] == at:
                counts[name][0] += 1
            time.sleep(0.01)  # a write every 10 ms at most: a steady trickle, not a flood

    def write() -> None:
        with transaction(factory) as s:
            s.execute(text("UPDATE stock SET quantity = quantity WHERE product_id = :p"), {"p": product})

    opened = (lambda f: f()) if mode == "immediate" else catalog_db.read_only
    held_cpu = []

    @contextmanager
    def reload_transaction(f):
        """The reload's transaction (its queries; building the snapshot after it takes no lock)."""
        with opened(f) as session:
            reloading[0], start = len(held_cpu) + 1, time.thread_time()
            yield session
            held_cpu.append(round(time.thread_time() - start, 2))
            reloading[0] = 0

    patches = (
        mock.patch.object(catalog_db, "read_only", reload_transaction),
        mock.patch.object(ab, "read_only", opened),
    )
    with patches[0], patches[1]:
        threads = [
            threading.Thread(target=loop, args=("writes", write)),
            threading.Thread(target=loop, args=("experiments", experiments.load)),
        ]
        for t in threads:
            t.start()
        cpu = []
        for _ in range(refreshes):
            start = time.thread_time()
            catalog_db.load_catalog(factory)
            cpu.append(round(time.thread_time() - start, 2))
            time.sleep(0.5)  # let the others catch up between reloads
        done.set()
        for t in threads:
            t.join()
    factory.kw["bind"].dispose()
    return {
        "mode": mode,
        "reload_cpu_s": cpu,
        "reload_transaction_cpu_s": held_cpu,
        "writes_inside_reloads": counts["writes"][0],
        "writes_failed": counts["writes"][1],
        "experiment_refreshes_inside_reloads": counts["experiments"][0],
        "experiment_refreshes_failed": counts["experiments"][1],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keeps the loaded database between runs")
    parser.add_argument("--refreshes", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sqlite-read-only-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = _database(workdir)
    results = [run_mode(url, mode, args.refreshes) for mode in ("immediate", "read_only")]
    RESULTS.write_text(json.dumps({"refreshes": args.refreshes, "results": results}, indent=2) + "\n")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
