"""The ads refresh's cost at production volume, on PostgreSQL and SQLite, and whether it holds up writers.

    .venv/bin/python -m bench.ads_refresh [--postgres URL] [--impressions 1000000 5000000] [--repeats 3]

Per database and volume, in a private schema (PostgreSQL) or a temporary file (SQLite): `impressions` ad
impressions over 30 days on 2,000 ads (200 campaigns x 10 products) from 50,000 viewers (7 in 10 shoppers,
the rest anonymous clients) in visits of 4 impressions of one ad, and a click for one in 50 of them, spread
by a fixed hash (the same rows on both databases). Timed, each the median of `repeats`:

- `full_count_s`: the refresh's count as it was before a replica kept settled days' counts (every
  day of the window counted: `ads.viewer_days` of impressions and clicks since 30 days ago, and the live
  ads), the baseline in the same run;
- `first_refresh_s`: `AdsSnapshot.load` in a read-only session with no counts kept (a replica's first
  refresh): every day counted, the settled ones per day to be kept (`ads.RollingViewerDays`);
- `refresh_s`: the steady state, `AdsSnapshot.load` with the counts of the refresh before (every replica,
  each refresh interval, 30 s apart): only the partial first day, yesterday and today counted;
- `day_rolled_refresh_s`: the first refresh of each of the next days, which also counts the day just
  settled (no rows are added after `NOW`: these read fewer recent rows than a live replica's would);
- `plain_count_s`: the same rows counted with `count(*)` per ad (the rate's count before viewers were
  counted once);
- `write_idle_s` and `write_during_refresh_{median,max}_s`: `ads.record_impressions` of one 200-impression
  batch (an API replica's flush), alone and while refreshes run on another thread (over the batches
  written during them): a refresh holding the write lock (SQLite) or row locks (PostgreSQL) shows here.

Writes bench/results/ads_refresh.json, or `--output` (a partial run, e.g. `--databases postgresql
--impressions 1000000`, kept apart from the full run's figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, func, select, text

RESULTS = Path(__file__).with_name("results") / "ads_refresh.json"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
ADS, CAMPAIGNS, VIEWERS, CLICK_EVERY = 2_000, 200, 50_000, 50
WINDOW_S = 30 * 86_400
BATCH = 200

# One row per i, in visits of 4 (g = i / 4: one viewer shown one ad 4 times within 3 minutes): the visit's
# ad, viewer and time from multiplicative hashes of g (the same SQL on both databases).
_ROW = f"""
SELECT i, (g * 2654435761) % {ADS} AS a, (g * 40503 + g / 7) % {VIEWERS} AS v,
       (g * 2246822519) % ({WINDOW_S} - 600) + (i % 4) * 60 AS back, (i * 7 + g / 3) % {CLICK_EVERY} AS c
FROM (SELECT i, i / 4 AS g FROM n) AS m
"""


def _seed(engine, n: int) -> None:
    pg = engine.dialect.name == "postgresql"
    if pg:
        source = f"WITH n AS (SELECT generate_series(0, {n - 1})::bigint AS i), r AS ({_ROW})"
        shown = "CAST(:now AS timestamptz) - make_interval(secs => back)"
        cat = "::text"
    else:
        count = f"SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {n - 1}"
        source = f"WITH RECURSIVE n(i) AS ({count}), r AS ({_ROW})"
        shown = "datetime(:now, '-' || back || ' seconds') || '.000000'"
        cat = ""
    cols = (
        f"'t' || i{cat}, 'c' || (a % {CAMPAIGNS}){cat}, a + 1, 'p' || a{cat},"
        f" CASE WHEN v % 10 < 7 THEN 's' || v{cat} END, CASE WHEN v % 10 >= 7 THEN 'k' || v{cat} END, 1"
    )
    now = NOW if pg else NOW.replace(tzinfo=None).isoformat(sep=" ")
    with engine.begin() as conn:
        conn.execute(
            text(
                f"{source} INSERT INTO ad_impressions (token_id, campaign_id, keyword_id, product_id,"
                f" shopper_id, client, slot, price, shown_at) SELECT {cols}, 0.5, {shown} FROM r"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                f"{source} INSERT INTO ad_clicks (token_id, campaign_id, keyword_id, product_id,"
                f" shopper_id, client, slot, price, charged, clicked_at)"
                f" SELECT {cols}, 0.5, {'true' if pg else '1'}, {shown} FROM r WHERE c = 0"
            ),
            {"now": now},
        )
        conn.exec_driver_sql("ANALYZE")
    if pg:  # as autovacuum leaves an insert-only table: its pages all-visible, read from an index alone
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ad_impressions, ad_clicks")


def _batches(start: int):
    from commerce.services.ads import ImpressionClaim

    k = start
    while True:
        yield [
            (
                ImpressionClaim(
                    token_id=f"w{k + j}",
                    campaign_id="c1",
                    keyword_id=1,
                    product_id="p1",
                    shopper_id=f"s{j}",
                    client=None,
                    slot=1,
                    price="0.50",
                    expires_at=0,
                ),
                NOW,
            )
            for j in range(BATCH)
        ]
        k += BATCH


def run(url: str, n: int, repeats: int) -> dict:
    pg = url.startswith("postgresql")
    import commerce.all_models  # noqa: F401  (complete metadata)
    from commerce.ads import AdClick, AdImpression
    from commerce.db import Base, make_engine, make_session_factory, read_only, transaction
    from commerce.services import ads
    from serving.search import CTR_WINDOW, AdsSnapshot, ClickRateCounts

    engine = make_engine(url)
    Base.metadata.create_all(engine)

    @event.listens_for(engine, "connect")
    def _no_foreign_keys(dbapi_conn, _record):
        # No campaigns, keywords or products are needed to count or to write impressions: their foreign
        # keys are off (a check per row, the same with and without a refresh running).
        cur = dbapi_conn.cursor()
        cur.execute("SET session_replication_role = replica" if pg else "PRAGMA foreign_keys=OFF")
        cur.close()
        if pg:
            dbapi_conn.commit()

    engine.dispose()
    factory = make_session_factory(engine)
    start = time.perf_counter()
    _seed(engine, n)
    seed_s = time.perf_counter() - start
    batches = _batches(0)

    def write() -> float:
        begin = time.perf_counter()
        with transaction(factory) as s:
            ads.record_impressions(s, next(batches))
        return time.perf_counter() - begin

    def refresh(counts: ClickRateCounts | None = None, at: datetime = NOW) -> float:
        begin = time.perf_counter()
        with read_only(factory) as s:
            AdsSnapshot.load(s, at, counts)
        return time.perf_counter() - begin

    def full() -> float:
        begin = time.perf_counter()
        with read_only(factory) as s:
            ads.viewer_days(s, AdImpression, AdImpression.shown_at, NOW - CTR_WINDOW)
            ads.viewer_days(s, AdClick, AdClick.clicked_at, NOW - CTR_WINDOW)
            ads.live_ads(s, ads.billing_clock(s, NOW))
        return time.perf_counter() - begin

    kept = ClickRateCounts()
    steady = [NOW + timedelta(seconds=30 * k) for k in range(1, repeats + 1)]
    rolled = [NOW + timedelta(days=k) for k in range(1, repeats + 1)]

    def plain() -> float:
        begin = time.perf_counter()
        with read_only(factory) as s:
            list(
                s.execute(
                    select(AdImpression.campaign_id, AdImpression.product_id, func.count())
                    .where(AdImpression.shown_at >= NOW - timedelta(days=30))
                    .group_by(AdImpression.campaign_id, AdImpression.product_id)
                )
            )
        return time.perf_counter() - begin

    refresh()  # warm the cache
    refresh(kept)  # a replica's first refresh: the settled days' counts the next ones keep
    rows = {
        "full_count_s": [full() for _ in range(repeats)],
        "first_refresh_s": [refresh() for _ in range(repeats)],
        "refresh_s": [refresh(kept, at) for at in steady],
        "day_rolled_refresh_s": [refresh(kept, at) for at in rolled],
        "plain_count_s": [plain() for _ in range(repeats)],
        "write_idle_s": [write() for _ in range(5 * repeats)],
    }
    done = threading.Event()

    def refreshing() -> None:
        for _ in range(repeats):
            refresh()
        done.set()

    thread = threading.Thread(target=refreshing)
    thread.start()
    during = []
    while not done.is_set():
        during.append(write())
        time.sleep(0.02)
    thread.join()
    engine.dispose()
    out = {k: round(statistics.median(v), 4) for k, v in rows.items()}
    out["write_during_refresh_median_s"] = round(statistics.median(during), 4)
    out["write_during_refresh_max_s"] = round(max(during), 4)
    out["writes_during_refresh"] = len(during)
    out["full_count_vs_refresh"] = round(out["full_count_s"] / out["refresh_s"], 1)
    out["full_count_vs_day_rolled_refresh"] = round(out["full_count_s"] / out["day_rolled_refresh_s"], 1)
    return {"impressions": n, "seed_s": round(seed_s, 1), **out}


def _postgres(url: str, n: int, repeats: int) -> dict:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in url else "?"
        return run(f"{url}{sep}options=-csearch_path%3D{schema}", n, repeats)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _sqlite(n: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return run(f"sqlite:///{tmp}/ads.db", n, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CROSSCART_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--impressions", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--databases", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = []
    for n in args.impressions:
        for db in args.databases:
            r = _postgres(args.postgres, n, args.repeats) if db == "postgresql" else _sqlite(n, args.repeats)
            results.append({"database": db, **r})
            print(json.dumps(results[-1]), flush=True)
    args.output.write_text(json.dumps({"repeats": args.repeats, "results": results}, indent=2) + "\n")
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |\n|" + " --- |" * len(keys))
    for r in results:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
