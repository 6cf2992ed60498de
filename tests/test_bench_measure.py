"""`bench.measure`: a step runs in a child process whose peak memory, time and result come back."""

from __future__ import annotations

import pytest

from bench.measure import measure


def allocate(megabytes: str) -> dict:
    """Touch `megabytes` of memory, then free it: only the sampled peak can see it."""
    import time

    import numpy as np

    block = np.ones(int(megabytes) * 2**20, dtype=np.uint8)
    time.sleep(0.3)  # several 50 ms samples while it is held
    size = int(block.sum())
    del block
    return {"bytes": size}


def spawn_child(megabytes: str) -> dict:
    """Hold `megabytes` in a grandchild process: the peak sums descendants."""
    import subprocess
    import sys

    code = f"import numpy as np, time; b = np.ones({int(megabytes)} * 2**20, dtype=np.uint8); time.sleep(1.0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    return {}


def test_peak_memory_time_and_result_of_a_step():
    run = measure("tests.test_bench_measure:allocate", 300)
    assert run["result"] == {"bytes": 300 * 2**20}
    assert run["peak_rss_mb"] >= 300
    assert run["peak_worker_rss_mb"] == 0  # no descendant
    assert run["seconds"] >= 0.3
    assert run["cpu_seconds"] > 0


def test_peak_counts_descendant_processes():
    run = measure("tests.test_bench_measure:spawn_child", 300)
    assert run["peak_worker_rss_mb"] >= 300
    assert run["peak_rss_mb"] >= run["peak_worker_rss_mb"]


def test_a_failing_step_says_why():
    with pytest.raises(SystemExit, match="invalid literal"):
        measure("tests.test_bench_measure:allocate", "many")


def test_a_step_past_the_memory_cap_is_stopped_and_recorded():
    run = measure("tests.test_bench_measure:allocate", 2000, abort_mb=400)
    assert run["aborted"] is True
    assert run["peak_rss_mb"] > 400
    assert run["result"] is None
