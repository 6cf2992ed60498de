"""Where Dask work runs: in this process by default, or on a Dask cluster named by a spec string.

Specs (the CLI's `--cluster` and the `CROSSCART_DASK_SCHEDULER` setting; callers pass them in):
- empty / None: no cluster; jobs run their Dask graphs in-process with the synchronous scheduler
  and an on-disk shuffle, so memory is bounded by a partition, not by the data set;
- `local:N`: a `distributed.LocalCluster` of N single-threaded worker processes, for this run only;
- `tcp://HOST:PORT` (or `tls://...`): an existing scheduler; its workers must see the same paths
  (shared or network storage) as this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client


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
        with Client(value, timeout="10s") as client:
            yield client
