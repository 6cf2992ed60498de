"""A Dask task that needs more memory than a worker has: the worker's nanny restarts the worker each time
it passes its memory budget (`distributed.worker.memory.terminate`), the scheduler retries the task on
another worker, and after `distributed.scheduler.allowed-failures` it gives up. `crosscart features job
--cluster local:1` must then end in bounded time with one `error:` line saying what happened and what
to change, the previous outputs whole; it ended with distributed's `KilledWorker` traceback, which names
neither memory nor the command's options.

The task is the job's own partition task replaced (in the command's process, pickled by value to the
workers) by one that holds more memory than the budget; the budget is lowered through Dask's
configuration so that it takes a few hundred MB, not the host's memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dask.system import CPU_COUNT
from distributed.system import MEMORY_LIMIT

from features.distributed import OUTPUTS
from tests.features.conftest import read_output
from tests.resilience.test_terminated_jobs import tiny_market  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]
BUDGET, HOG = 400 * 2**20, 800 * 2**20  # a single-threaded worker's "auto" limit is MEMORY_LIMIT / CPUs
HOGGING = f"""
import sys
import features.distributed

def hog(*args, **kwargs):  # defined in __main__, so pickled by value to the workers
    import time
    block = bytearray({HOG})
    block[::4096] = b"x" * len(range(0, len(block), 4096))  # touched: resident, not just reserved
    time.sleep(3)

features.distributed._partition_job = hog
sys.argv = ["crosscart", *sys.argv[1:]]
from crosscart.cli import app
app()
"""


def test_a_task_past_the_workers_memory_is_one_error_line_in_bounded_time(tiny_market, tmp_path):  # noqa: F811
    out = tmp_path / "features"
    args = ["features", "job", "--data", str(tiny_market), "--out", str(out), "--cluster", "local:1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", "from crosscart.cli import app; app()", *args[:-2]], env=env,
                          cwd=ROOT, capture_output=True).returncode == 0  # fmt: skip
    before = {name: read_output(name, out / name) for name in OUTPUTS}
    env.update(
        DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE=str(BUDGET / (MEMORY_LIMIT * min(1, 1 / CPU_COUNT))),
        DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1",  # the task's second worker death ends it
    )

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", HOGGING, *args], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    took = time.monotonic() - started

    assert result.returncode == 1, result.stderr
    assert "memory budget" in result.stderr  # the nannies' log said why, as it did before
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: feature job: ") and "died 2 times" in last and "memory" in last, last
    assert "--partitions" in last and "nothing published" in last, last
    assert took < 60
    for name in OUTPUTS:
        assert read_output(name, out / name).equals(before[name]), name
