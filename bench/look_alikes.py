"""What refusing look-alike coupon ids costs a coupon's creation, by how many coupons are stored.

    .venv/bin/python -m bench.look_alikes [--sizes 1000,10000,100000] [--repeats 20]

`create_coupon` refuses a new id whose Unicode skeleton a stored other id has
(`commerce.services._util.unlike_stored`): one lookup on the indexed `coupons.coupon_id_skeleton`
(migration 0036; before, the skeleton of every stored id per creation: 231 ms of CPU at 100,000 against
1.5 ms without, in the run that wrote the JSON). Per size, a SQLite database in a temporary folder holds
that many coupons (their skeletons set on insert); a coupon is then created `repeats` times (each rolled
back) with the check, and as many times with it replaced by a pass-through (the baseline), alternating.
CPU time of this process, median per creation; writes bench/results/look_alikes.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from sqlalchemy import insert

from bench import write_result


def _seed(factory, n: int) -> None:
    from commerce.coupons import Coupon
    from commerce.db import transaction

    rows = [{"coupon_id": f"c-{i:07d}", "kind": "amount_off", "value": 5} for i in range(n)]
    with transaction(factory) as s:
        for start in range(0, n, 10_000):
            s.execute(insert(Coupon), rows[start : start + 10_000])


def _one(factory, checked: bool) -> float:
    from commerce.services import coupons

    patch = mock.patch.object(coupons, "unlike_stored", lambda _s, name, *_: name)
    with factory() as s:
        if not checked:
            patch.start()
        try:
            started = time.process_time()
            coupons.create_coupon(s, coupons.CouponInput(kind="amount_off", value="5", coupon_id="PAY"))
            return time.process_time() - started
        finally:
            if not checked:
                patch.stop()
            s.rollback()


def run(sizes: list[int], repeats: int) -> list[dict]:
    import commerce.all_models  # noqa: F401
    from commerce.db import Base, make_engine, make_session_factory

    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
            Base.metadata.create_all(engine)
            factory = make_session_factory(engine)
            _seed(factory, n)
            _one(factory, True)  # warm: statement caches, ICU data
            timed: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(repeats):
                for checked in (True, False):
                    timed[checked].append(_one(factory, checked))
            engine.dispose()
        checked, baseline = (statistics.median(timed[k]) * 1000 for k in (True, False))
        out.append(
            {
                "stored_coupons": n,
                "create_ms_checked": round(checked, 2),
                "create_ms_baseline": round(baseline, 2),
                "check_ms": round(checked - baseline, 2),
                "ratio": round(checked / baseline, 2),
            }
        )
        print(
            f"{n:>8} stored: create {checked:7.2f} ms CPU with the check, {baseline:6.2f} ms without "
            f"({checked / baseline:.1f}x)"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    write_result("look_alikes", {"repeats": args.repeats, "sizes": run(sizes, args.repeats)})


if __name__ == "__main__":
    main()
