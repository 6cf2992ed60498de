"""Time `commerce.importer.load_marketplace` on a generated marketplace (default: `demo` scale).

    .venv/bin/python -m bench.commerce_import [--data DIR] [--postgres URL]

Without --data a `demo` marketplace is generated into a temporary directory first. Each backend gets a
fresh database; the load runs twice to show the re-run (idempotent, nothing added) cost as well.
The "orders step" column is the time spent turning purchase events into completed orders
(first load / re-run).
Writes bench/results/commerce_import.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "commerce_import.json"


def _count(factory, table: str) -> int:
    from sqlalchemy import text

    with factory() as session:
        return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def run_backend(name: str, url: str, data_dir: Path, events: str) -> dict:
    from commerce import migrate
    from commerce.db import make_engine, make_session_factory
    from commerce.identity import Keyring
    from commerce.importer import load_marketplace

    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    first = load_marketplace(factory, data_dir, keyring=Keyring("bench-key"), events=events)
    t = time.perf_counter()
    again = load_marketplace(factory, data_dir, keyring=Keyring("bench-key"), events=events)
    rerun = time.perf_counter() - t
    tables = (
        "events",
        "products",
        "shoppers",
        "coupon_grants",
        "orders",
        "order_lines",
        "coupon_redemptions",
    )
    stored = {table: _count(factory, table) for table in tables}
    engine.dispose()
    return {
        "backend": name,
        "events": events,
        "first_load_s": round(first.seconds, 2),
        "rerun_s": round(rerun, 2),
        "first_load_steps_s": {k: round(v, 2) for k, v in first.step_seconds.items()},
        "rerun_steps_s": {k: round(v, 2) for k, v in again.step_seconds.items()},
        "rows_read": first.rows,
        "rows_stored": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a generated marketplace; default: generate demo")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CROSSCART_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data
        if data_dir is None:
            from features.synth import generate_marketplace

            data_dir = Path(tmp) / "market"
            generate_marketplace(data_dir, "demo", seed=1)
        results = []
        for events in ("purchases", "all"):
            db = Path(tmp) / f"bench-{events}.db"
            results.append(run_backend("sqlite", f"sqlite:///{db}", data_dir, events))
            results.append(_postgres(args.postgres, data_dir, events))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=2))
    table = Table(
        "backend",
        "events",
        "first load (s)",
        "re-run (s)",
        "events stored",
        "products",
        "shoppers",
        "grants",
        "orders",
        "orders step (s)",
        title=f"load_marketplace on {data_dir}",
    )
    for r in results:
        if "skipped" in r:
            table.add_row(r["backend"], r["events"], "skipped: " + r["skipped"], *[""] * 7)
            continue
        s = r["rows_stored"]
        table.add_row(
            r["backend"],
            r["events"],
            f"{r['first_load_s']:.1f}",
            f"{r['rerun_s']:.1f}",
            f"{s['events']:,}",
            f"{s['products']:,}",
            f"{s['shoppers']:,}",
            f"{s['coupon_grants']:,}",
            f"{s['orders']:,}",
            f"{r['first_load_steps_s']['orders']:.1f} / {r['rerun_steps_s']['orders']:.1f}",
        )
    Console().print(table)


def _postgres(url: str, data_dir: Path, events: str) -> dict:
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # no server: report it in the table instead of failing the bench
        return {"backend": "postgresql", "events": events, "skipped": f"{type(exc).__name__}"}
    try:
        sep = "&" if "?" in url else "?"
        return run_backend("postgresql", f"{url}{sep}options=-csearch_path%3D{schema}", data_dir, events)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
