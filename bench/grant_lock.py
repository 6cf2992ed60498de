"""How long a hand grant waits while a large campaign is scheduled, on PostgreSQL.

    .venv/bin/python -m bench.grant_lock [--postgres URL] [--shoppers 100000] [--repeats 3]

In a private schema: `shoppers` shoppers, a draft campaign treating all of them (its schedule checks
each against the live coupon holders and the frequency cap, holding campaign scheduling's advisory
lock, `commerce.services.coupons.lock_live_coupons`), a running campaign of a later window with one
grant-only coupon, and a coupon of no campaign. Per repeat the schedule runs on one thread (rolled
back, so every repeat schedules the same draft); once it holds the lock (seen in `pg_locks`), a hand
grant of the coupon of no campaign, then one of the running campaign's coupon (the baseline: it needs
the rule, so it waits by design), each to a shopper of its own, are timed on another thread, each
rolled back. A lock wait is idle time, so these are wall times (the median of the repeats); the
schedule's own CPU time is its thread's. Writes bench/results/grant_lock.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text, update

RESULTS = Path(__file__).with_name("results") / "grant_lock.json"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _seed(factory, n: int) -> None:
    from commerce.campaigns import Campaign, CampaignMember
    from commerce.db import transaction
    from commerce.services import campaigns as cmp
    from commerce.services.coupons import CouponInput, create_coupon
    from commerce.shoppers import Shopper

    with transaction(factory) as s:
        s.execute(insert(Shopper), [{"shopper_id": f"b{i}", "region": "Shanghai"} for i in range(n + 2)])
        for cid, start in (
            ("big", NOW),
            ("later", NOW + 30 * DAY),
            ("past0", NOW - 9 * DAY),
            ("past1", NOW - 18 * DAY),
        ):
            cmp.create_campaign(
                s, cmp.CampaignInput(cid, "site", "100000", start, start + 7 * DAY, "0", campaign_id=cid)
            )
            create_coupon(
                s, CouponInput("amount_off", "5", coupon_id=f"{cid}-5", campaign_id=cid, requires_grant=True)
            )
        create_coupon(s, CouponInput("amount_off", "5", coupon_id="open"))
        for cid in ("big", "past0", "past1"):  # the past ones: contacts the frequency cap counts
            s.execute(
                insert(CampaignMember),
                [
                    {"campaign_id": cid, "shopper_id": f"b{i}", "arm": f"{cid}-5", "coupon_id": f"{cid}-5"}
                    for i in range(n)
                ],
            )
        s.execute(update(Campaign).where(Campaign.campaign_id.like("past%")).values(status="completed"))
        s.execute(
            insert(CampaignMember).values(
                campaign_id="later", shopper_id="b0", arm="later-5", coupon_id="later-5"
            )
        )
        cmp.schedule_campaign(s, "later", at=NOW)
        cmp.start_campaign(s, "later", at=NOW + 30 * DAY)


def _locked(factory) -> bool:
    from commerce.services.coupons import LIVE_COUPON_LOCK_KEY

    with factory() as s:
        return bool(
            s.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k AND granted"),
                {"k": LIVE_COUPON_LOCK_KEY},
            )
        )


def run(url: str, n: int, repeats: int) -> dict:
    import commerce.all_models  # noqa: F401  (complete metadata)
    from commerce.db import Base, make_engine, make_session_factory
    from commerce.services import campaigns as cmp
    from commerce.services.coupons import grant_coupon

    engine = make_engine(url, pool_size=5)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    _seed(factory, n)
    rows = {"schedule_wall_s": [], "schedule_cpu_s": [], "open_grant_wait_s": [], "campaign_grant_wait_s": []}
    for _ in range(repeats):
        done = threading.Event()

        def schedule(done=done) -> None:
            start, cpu = time.perf_counter(), time.thread_time()
            with factory() as s:
                cmp.schedule_campaign(s, "big", at=NOW)
                rows["schedule_cpu_s"].append(time.thread_time() - cpu)
                rows["schedule_wall_s"].append(time.perf_counter() - start)
                s.rollback()
            done.set()

        thread = threading.Thread(target=schedule)
        thread.start()
        while not _locked(factory) and not done.is_set():
            time.sleep(0.001)

        def grant(key: str, coupon: str, shopper: str) -> None:
            start = time.perf_counter()
            with factory() as s:
                assert grant_coupon(s, coupon, [shopper], at=NOW + 30 * DAY) == 1
                rows[key].append(time.perf_counter() - start)
                s.rollback()

        grants = [
            threading.Thread(target=grant, args=("open_grant_wait_s", "open", f"b{n}")),
            threading.Thread(target=grant, args=("campaign_grant_wait_s", "later-5", f"b{n + 1}")),
        ]
        for t in grants:
            t.start()
        for t in (thread, *grants):
            t.join()
    engine.dispose()
    out = {k: round(statistics.median(v), 4) for k, v in rows.items()}
    out["open_vs_campaign_grant_wait"] = round(out["open_grant_wait_s"] / out["campaign_grant_wait_s"], 4)
    return {"shoppers": n, "repeats": repeats, **out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CROSSCART_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--shoppers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in args.postgres else "?"
        result = run(f"{args.postgres}{sep}options=-csearch_path%3D{schema}", args.shoppers, args.repeats)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | value |\n| --- | --- |")
    for key, value in result.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
