"""Where Dask work runs: in this process by default, or on a Dask cluster named by a spec string.

Specs (the CLI's `--cluster` and the `CROSSCART_DASK_SCHEDULER` setting; callers pass them in):
- empty / None: no cluster; jobs run their Dask graphs in-process with the synchronous scheduler
  and an on-disk shuffle, so memory is bounded by a partition, not by the data set;
- `local:N`: a `distributed.LocalCluster` of N single-threaded worker processes, for this run only;
- `tcp://HOST:PORT` (or `tls://...`): an existing scheduler; its workers must see the same paths
  (shared or network storage) as this process.

Jobs wait for their results on a cluster through `compute_on`, which gives up on a stalled cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)
#: How long a job on a cluster may go without any task finishing before it is given up (seconds)
STALL_SECONDS = 300.0


class ClusterJobFailed(RuntimeError):
    """A job the Dask cluster itself failed (not one of its tasks): the commands say so in one line."""


class ClusterJobStalled(ClusterJobFailed):
    """A job on a Dask cluster where no task finished for `stall_seconds`: it was cancelled."""


class ClusterUnreachable(ClusterJobFailed):
    """The Dask scheduler could not be reached, before or during a job (it died, or the network to it)."""


class ClusterWorkersDied(ClusterJobFailed):
    """A task's workers died more often than `distributed.scheduler.allowed-failures` allows (distributed's
    `KilledWorker`, the cause): most often the task needs more memory than a worker has, and the worker's
    nanny restarts it each time it passes its budget (`distributed.worker.memory.terminate`)."""


def parse_cluster_spec(spec: str | None) -> tuple[str, int | str] | None:
    """("local", N) / ("address", "tcp://...") / None; a clear error on anything else."""
    if spec is None or not spec.strip():
        return None
    spec = spec.strip()
    if spec.startswith("local:"):
        try:
            workers = int(spec.removeprefix("local:"))
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"cluster spec {spec!r}: 'local:N' needs a worker count N >= 1")
        return ("local", workers)
    if spec.startswith(("tcp://", "tls://")):
        return ("address", spec)
    raise ValueError(f"cluster spec {spec!r}: use 'local:N' or a scheduler address 'tcp://HOST:8786'")


@contextmanager
def dask_client(spec: str | None) -> Iterator[Client | None]:
    """A connected `distributed.Client` for `spec` (None without one), closed (with any LocalCluster
    it started) on exit."""
    parsed = parse_cluster_spec(spec)
    if parsed is None:
        yield None
        return
    from distributed import Client, LocalCluster

    kind, value = parsed
    if kind == "local":
        with (
            # loopback only; the scheduler's HTTP server on a free port, not the shared default 8787
            LocalCluster(
                n_workers=value, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    else:
        try:
            client = Client(value, timeout="10s")
        except OSError as exc:
            raise ClusterUnreachable(f"cannot reach the Dask scheduler {value}: {exc}") from exc
        with client:
            yield client


def compute_on(
    client: Client, tasks: Sequence[Any], *, what: str, stall_seconds: float = STALL_SECONDS
) -> list[Any]:
    """`dask.compute(*tasks, scheduler=client)` that cannot wait forever: the results, or the first
    task's error, or ClusterJobStalled once no task on the cluster has finished for `stall_seconds`,
    ClusterWorkersDied when a task's workers kept dying (`KilledWorker`: a task past the workers'
    memory, 15 s for 2 tries and 25 s for the default 4 on a 1-worker LocalCluster), or
    ClusterUnreachable when the scheduler is gone (distributed's OSError / CommClosedError).

    A worker lost mid-job (killed, OOM, a node drained) is logged, and the scheduler reruns its work
    on the others. That recovery is the scheduler's and the peer-to-peer shuffle's, and it has gaps
    (a shuffle restarted while workers come and go can wait for ever: dask/distributed#8088, #8411):
    a training set whose worker was killed at the final join once waited past 300 s, the client
    gathering with no timeout and nothing said. A stall fails the job instead; the callers publish
    their outputs only after success (`commerce.files.staged_directory`), so nothing half-written is
    published. Progress is any task of the cluster finishing (the scheduler's summed task durations):
    one long task is progress when it ends, so `stall_seconds` must exceed the longest single task;
    other jobs on a shared cluster count too (the guard then waits longer, never less)."""

    def state(dask_scheduler) -> tuple[float, list[str]]:  # runs on the scheduler (pickled by value)
        done = sum(sum(p.all_durations.values()) for p in dask_scheduler.task_prefixes.values())
        return done, list(dask_scheduler.workers)

    from distributed import KilledWorker

    futures = []
    try:
        futures = client.compute(list(tasks))
        progress, workers = client.run_on_scheduler(state)
        seen, lost = set(workers), []
        checked = moved = time.monotonic()
        while not all(f.done() for f in futures) and not any(f.status == "error" for f in futures):
            time.sleep(0.05)
            now = time.monotonic()
            if now - checked < min(1.0, stall_seconds / 4):
                continue
            checked = now
            done, workers = client.run_on_scheduler(state)
            for address in seen - set(workers):
                lost.append(address)
                log.warning("%s: Dask worker %s lost mid-job; the scheduler reruns its work", what, address)
            seen = set(workers)
            if done != progress:
                progress, moved = done, now
            elif now - moved >= stall_seconds:
                because = f" since it lost worker(s) {', '.join(lost)}" if lost else ""
                raise ClusterJobStalled(
                    f"{what}: no task on the Dask cluster finished for {now - moved:.0f} s{because}; "
                    "cancelled, nothing published"
                )
        return client.gather(futures)
    except KilledWorker as exc:  # its traceback named neither memory nor what to change
        raise ClusterWorkersDied(
            f"{what}: Dask workers died {exc.allowed_failures + 1} times running task {exc.task!r} (the "
            f"last {exc.last_worker.address}); a worker past its memory budget is restarted by its nanny "
            "(the workers' log says so above) or ended by the system's OOM killer: give each worker "
            "more memory (fewer workers per host) or split the work finer (the command's --partitions "
            "or --chunk-size); nothing published"
        ) from exc
    except OSError as exc:  # CommClosedError is one; a task's own (a missing input) marks its future
        if any(f.status == "error" for f in futures):
            raise
        raise ClusterUnreachable(
            f"{what}: lost the Dask scheduler mid-job ({exc}); nothing published"
        ) from exc
    finally:
        client.cancel([f for f in futures if not f.done()], force=True)
