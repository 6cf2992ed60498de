"""Peak memory of the long-format loaders per row read, on generated files in public layouts.

    .venv/bin/python -m bench.loader_memory [--rows 2000000 4000000] [--label after]

Layouts: Favorita's train.csv (`id,date,store_nbr,item_nbr,unit_sales,onpromotion`, read by `load_sales`
as `evaluate forecast` does) and RetailRocket's events.csv (`timestamp,visitorid,event,itemid,
transactionid`, millisecond times, read by `load_events`). Each load runs in a fresh subprocess; its
cost is the peak RSS (`VmHWM`, Linux) less the RSS after imports, per row, at two sizes, and what each
row past the smaller size costs (fixed costs aside: the figure for a 125M-row file). Results are kept
per `--label` in bench/results/loader_memory.json: a run on the code before a change and one after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench import RESULTS_DIR, write_result

ROOT = Path(__file__).resolve().parent.parent

LOADS = {
    "favorita": "load_sales(path, item_col='item_nbr', time_col='date', quantity_col='unit_sales')",
    "retailrocket": (
        "load_events(path, user_col='visitorid', item_col='itemid', time_col='timestamp', event_col='event')"
    ),
}

# VmHWM, not ru_maxrss: the latter keeps the parent's RSS at the fork (the generated frames).
CHILD = """
import re, sys, psutil
from features.loaders import load_events, load_sales
path = sys.argv[1]
base = psutil.Process().memory_info().rss
frame, report = {call}
with open("/proc/self/status") as status:
    peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) * 1024
print(peak - base, report.rows_kept)
"""


def favorita_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Favorita's layout and value shapes: 54 stores, ~4,000 items with 6-digit numbers, 1,684 days,
    unit sales with up to 3 decimals (weighed goods), a few returns, onpromotion blank in early years."""
    rng = np.random.default_rng(seed)
    items = np.sort(rng.choice(np.arange(96995, 2127114), size=4000, replace=False))
    day = np.sort(rng.integers(0, 1684, rows))
    sales = np.where(rng.random(rows) < 0.1, rng.integers(1, 20000, rows) / 1000, rng.integers(1, 30, rows))
    sales = np.where(rng.random(rows) < 0.001, -sales, sales)
    promo = np.where(day < 500, "", np.where(rng.random(rows) < 0.1, "True", "False"))
    pd.DataFrame(
        {
            "id": np.arange(rows),
            "date": (pd.Timestamp("2013-01-01") + pd.to_timedelta(day, unit="D")).strftime("%Y-%m-%d"),
            "store_nbr": rng.integers(1, 55, rows),
            "item_nbr": items[rng.zipf(1.3, rows) % len(items)],
            "unit_sales": sales,
            "onpromotion": promo,
        }
    ).to_csv(path, index=False)


def retailrocket_csv(path: Path, rows: int, seed: int = 0) -> None:
    """RetailRocket's layout: millisecond times (nearly all distinct), ~half as many visitors as rows,
    ~235k items, 97% views, a transaction id on purchases only."""
    rng = np.random.default_rng(seed)
    event = rng.choice(["view", "addtocart", "transaction"], rows, p=[0.97, 0.022, 0.008])
    transaction = np.where(event == "transaction", rng.integers(0, 17672, rows).astype(str), "")
    pd.DataFrame(
        {
            "timestamp": 1430622000000 + np.sort(rng.integers(0, 11_700_000_000, rows)),
            "visitorid": rng.integers(0, rows // 2, rows),
            "event": event,
            "itemid": rng.zipf(1.2, rows) % 235061,
            "transactionid": transaction,
        }
    ).to_csv(path, index=False)


def measure(layout: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    child = CHILD.format(call=LOADS[layout])
    out = subprocess.run(
        [sys.executable, "-c", child, str(path)], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    peak, kept = map(int, out[-2:])
    return {
        "layout": layout,
        "rows_kept": kept,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "peak_mb": round(peak / 2**20, 1),
        "peak_bytes_per_row": round(peak / kept, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=[2_000_000, 4_000_000], metavar="N")
    parser.add_argument("--label", default="after", help="the key these figures are kept under")
    args = parser.parse_args()
    results_file = RESULTS_DIR / "loader_memory.json"
    result = json.loads(results_file.read_text()) if results_file.exists() else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout, write in (("favorita", favorita_csv), ("retailrocket", retailrocket_csv)):
            sizes = []
            for n in args.rows:
                path = Path(tmp) / f"{layout}.csv"
                write(path, n)
                sizes.append(measure(layout, path))
                print(
                    f"{args.label:>8} {layout:<13} {n:>9} rows  {sizes[-1]['file_mb']:>7} MB file"
                    f"  peak {sizes[-1]['peak_mb']:>7} MB = {sizes[-1]['peak_bytes_per_row']:>6} B/row",
                    flush=True,
                )
            (small, large) = sizes
            # what each further row costs: the figure that scales to a 125M-row file
            extra = (large["peak_mb"] - small["peak_mb"]) * 2**20 / (large["rows_kept"] - small["rows_kept"])
            print(f"{args.label:>8} {layout:<13} each further row: {extra:.1f} B", flush=True)
            rows.append({"layout": layout, "sizes": sizes, "bytes_per_further_row": round(extra, 1)})
    result[args.label] = rows
    write_result("loader_memory", result)


if __name__ == "__main__":
    main()
