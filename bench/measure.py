"""Time and peak memory of one benchmark step, run in a fresh child process.

`measure("bench.scale:feature_job", arg, ...)` starts `python -m bench.measure bench.scale:feature_job
ARGS...`; the child samples the summed RSS of itself and all its descendants (Dask workers, pools)
every 50 ms on a thread, calls the function with the string arguments, and prints one JSON line:
`seconds` (wall time of the call, or the `seconds` the function returns when it must leave out a
start-up such as a LocalCluster's), `peak_rss_mb` (over the whole child, start-up included),
`peak_worker_rss_mb` (the largest single descendant process, e.g. one Dask worker; 0 without any),
`cpu_seconds` (user + system CPU of the child and the descendants it waited for, start-up included:
on a shared machine wall time stretches with the load, CPU time much less) and `result` (the
function's JSON-able return value). A fresh process per step means one step's heap
never inflates the next one's peak.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.05
ROOT = Path(__file__).resolve().parents[1]
ABORT_ENV, ABORT_CODE = "BENCH_ABORT_MB", 3


def measure(target: str, *args: object, timeout: float = 7200, abort_mb: float | None = None) -> dict:
    """Run `module:function(*args)` in a child process; return {seconds, peak_rss_mb, result}.
    With `abort_mb`, a child whose summed RSS passes it stops there (protecting a shared machine) and
    the record says `aborted: true` with the time and peak so far. A failing child raises SystemExit
    with the end of its stderr."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if abort_mb is not None:
        env[ABORT_ENV] = str(abort_mb)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.measure", target, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode not in (0, ABORT_CODE):
        raise SystemExit(f"{target} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class PeakRSS:
    """Peak of the summed RSS of this process and its descendants (`peak`), and the peak of the
    largest single descendant (`peak_child`: a Dask worker), sampled on a daemon thread."""

    def __init__(self, interval: float = SAMPLE_SECONDS, on_peak=None, limit: float | None = None):
        import psutil

        self.on_peak, self.limit = on_peak, limit
        self.me, self.interval, self.peak, self.peak_child = psutil.Process(), interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:  # a worker that just exited
                    continue
                total += rss
                if p.pid != self.me.pid:
                    self.peak_child = max(self.peak_child, rss)
            self.peak = max(self.peak, total)
            if self.limit is not None and self.peak > self.limit and self.on_peak is not None:
                self.on_peak(self)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(2 * self.interval)  # one more sample after the work
        self._stop.set()
        self._thread.join()


def _child(target: str, args: list[str]) -> None:
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    t0 = time.perf_counter()

    def abort(rss: PeakRSS) -> None:
        _report(rss, time.perf_counter() - t0, None, aborted=True)
        for p in rss.me.children(recursive=True):
            p.kill()
        os._exit(ABORT_CODE)

    limit = os.environ.get(ABORT_ENV)
    with PeakRSS(on_peak=abort, limit=float(limit) * 2**20 if limit else None) as rss:
        t0 = time.perf_counter()
        result = fn(*args)
        seconds = time.perf_counter() - t0
    if isinstance(result, dict) and "seconds" in result:
        seconds = result.pop("seconds")
    _report(rss, seconds, result)


def _report(rss: PeakRSS, seconds: float, result: object, aborted: bool = False) -> None:
    cpu = rss.me.cpu_times()  # children_*: the descendants this process has waited for
    record = {
        "seconds": seconds,
        "cpu_seconds": cpu.user + cpu.system + cpu.children_user + cpu.children_system,
        "peak_rss_mb": rss.peak / 2**20,
        "peak_worker_rss_mb": rss.peak_child / 2**20,
        "result": result,
    }
    if aborted:
        record["aborted"] = True
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
