"""Console speed and weight: server render time per page (p50 / p95) and page weight, on a demo database.

    .venv/bin/python -m bench.console                       # builds the tiny demo in a temp dir (~1 min)
    .venv/bin/python -m bench.console --data-dir var        # the data `make run` built (demo scale)

Each page is requested `--repeat` times in process (FastAPI TestClient: the app's own time, no network),
signed in with the role that uses it, after one warm-up request. The baseline, measured in the same run,
is `GET /health`: figures are also quoted as ratios to it. Page weight is the HTML plus the CSS and
JavaScript it loads (uncompressed). Targets (issue 12): p95 <= 200 ms, weight <= 500 kB. Planning a
campaign is an action, not a page; its time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
TARGET_P95_MS, TARGET_KB = 200.0, 500.0
HX = {"HX-Request": "true"}
ROOT = Path(__file__).resolve().parents[1]


def build_tiny_demo(data_dir: Path) -> None:
    env = {**os.environ, "CROSSCART_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", "from crosscart.cli import app; app()", "demo", "--scale", "tiny",
         "--no-serve"],
        env=env, cwd=data_dir, check=True, capture_output=True,
    )  # fmt: skip


def tiny_demo_dir(data_dir: Path | None) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """`data_dir` resolved, or a tiny demo built into a temporary directory (returned for clean-up)."""
    if data_dir is not None:
        return data_dir.resolve(), None
    tmp = tempfile.TemporaryDirectory()
    print("building the tiny demo ...", flush=True)
    build_tiny_demo(Path(tmp.name))
    return Path(tmp.name).resolve(), tmp


def timed(client, path: str, repeat: int, headers: dict | None = None) -> tuple[list[float], bytes]:
    client.get(path, headers=headers)  # warm-up: imports, template compilation, first registry read
    times = []
    body = b""
    for _ in range(repeat):
        start = time.perf_counter()
        r = client.get(path, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        body = r.content
    return times, body


def assets_kb(client, html: bytes) -> float:
    """The HTML plus every stylesheet and script it references, in kB."""
    total = len(html)
    for ref in re.findall(rb'(?:href|src)="(/console/static/[^"]+)"', html):
        total += len(client.get(ref.decode()).content)
    return total / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="A demo data dir (default: build tiny).")
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()

    data_dir, tmp = tiny_demo_dir(args.data_dir)
    markets = list(data_dir.glob("marketplace-*"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{data_dir / 'mlflow.db'}"
    from fastapi.testclient import TestClient

    from crosscart.settings import Settings
    from serving.app import create_app

    document = json.loads((data_dir / "demo-keys.json").read_text())
    keys = {label: k["key"] for label, k in document["keys"].items()}
    campaign = document["samples"]["campaign"]
    settings = Settings(data_dir=data_dir, rate_limit_per_minute=10**6, rate_limit_anonymous_per_minute=10**6)
    pages = {
        "marketer": ["/console", "/console/campaigns", "/console/campaigns/new",
                     f"/console/campaigns/{campaign}", "/console/coupons", "/console/coupons/new"],
        "data_scientist": ["/console/experiments", "/console/experiments/new", "/console/models"],
        "admin": ["/console/merchants", "/console/keys"],
        "merchant": ["/console/shop", "/console/keyword-campaigns", "/console/keyword-campaigns/new"],
    }  # fmt: skip
    rows = []
    with TestClient(create_app(settings, start_background=False, warm_shoppers=0)) as client:
        health, _ = timed(client, "/health", args.repeat)
        base_p95 = float(np.percentile(health, 95))
        sign_in_page = timed(client, "/console/sign-in", args.repeat)
        rows.append(("(anonymous)", "/console/sign-in", *sign_in_page))
        for role, paths in pages.items():
            client.cookies.clear()
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/sign-in").text)[1]
            client.post("/console/sign-in", data={"api_key": keys[role], "csrf_token": token})
            for path in paths:
                rows.append((role, path, *timed(client, path, args.repeat)))
            if role == "marketer":  # the report fragment htmx loads after a completed campaign's page
                report = f"/console/campaigns/{campaign}/report"
                start = time.perf_counter()
                client.get(report, headers={"HX-Request": "true"})
                report_cold_ms = (time.perf_counter() - start) * 1000
                rows.append((role, report + " (htmx, cached)", *timed(client, report, args.repeat, HX)))
        results = []
        print(f"\nbaseline GET /health p95 {base_p95:.2f} ms; {args.repeat} requests per page\n")
        print(f"{'role':<15} {'page':<42} {'p50 ms':>8} {'p95 ms':>8} {'x health':>9} {'weight kB':>10}")
        for role, path, times, body in rows:
            p50, p95 = float(np.percentile(times, 50)), float(np.percentile(times, 95))
            weight = assets_kb(client, body)
            label = path if campaign not in path else path.replace(campaign, "{id}")
            results.append({"role": role, "page": label, "p50_ms": round(p50, 2),
                            "p95_ms": round(p95, 2), "p95_vs_health": round(p95 / base_p95, 1),
                            "weight_kb": round(weight, 1)})  # fmt: skip
            print(f"{role:<15} {label:<42} {p50:8.1f} {p95:8.1f} {p95 / base_p95:9.1f} {weight:10.1f}")
    worst_p95 = max(r["p95_ms"] for r in results)
    worst_kb = max(r["weight_kb"] for r in results)
    summary = {
        "data": "crosscart demo --scale " + ",".join(sorted(m.name.split("-", 1)[1] for m in markets)),
        "repeat": args.repeat,
        "health_p95_ms": round(base_p95, 3),
        "report_first_measurement_ms": round(report_cold_ms, 1),
        "pages": results,
        "worst_p95_ms": worst_p95,
        "worst_weight_kb": worst_kb,
        "targets": {"p95_ms": TARGET_P95_MS, "weight_kb": TARGET_KB},
        "meets_targets": worst_p95 <= TARGET_P95_MS and worst_kb <= TARGET_KB,
    }
    print(f"\nfirst measurement of the campaign report (then cached 10 min): {report_cold_ms:.0f} ms")
    print(f"worst p95 {worst_p95:.1f} ms (target {TARGET_P95_MS:.0f}); heaviest {worst_kb:.1f} kB (target "
          f"{TARGET_KB:.0f}); targets {'met' if summary['meets_targets'] else 'MISSED'}")  # fmt: skip
    from bench import write_result

    write_result("console", summary)
    if tmp is not None:
        tmp.cleanup()
    return 0 if summary["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
