"""Batch scoring: the top-N list of every shopper, precomputed into partitioned Parquet.

Shoppers are cut into fixed-size chunks; each chunk is one Dask task that calls the model's own
`recommend` and writes `part-NNNNN.parquet` (shopper_id, rank, product_id, score). Without a client
the tasks run here one after another; with a `distributed.Client` the fitted model is broadcast
once to every worker and the chunks run there (the workers must see `out_dir`). Memory per task is
one chunk's candidate scores, whatever the number of shoppers.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from models.recommenders.base import Recommender

COLUMNS = ("shopper_id", "rank", "product_id", "score")


def score_all(
    model: Recommender,
    out_dir: str | Path,
    *,
    n: int = 20,
    shopper_ids: Sequence[str] | None = None,
    chunk_size: int = 5_000,
    client=None,
) -> Path:
    """Write the top-`n` unseen items of every shopper the model knows (or of `shopper_ids`) to
    `out_dir/part-*.parquet` (replacing earlier parts) and return `out_dir`."""
    import dask

    if n < 1 or chunk_size < 1:
        raise ValueError(f"n and chunk_size must be >= 1, got n={n}, chunk_size={chunk_size}")
    ids = np.asarray(
        shopper_ids if shopper_ids is not None else getattr(model, "user_ids_", []), dtype=object
    )
    if len(ids) == 0:
        raise ValueError("no shoppers to score: pass shopper_ids or a fitted model that knows its shoppers")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shared = client.scatter(model, broadcast=True) if client is not None else model
    task = dask.delayed(_score_chunk, pure=True)
    tasks = [
        task(shared, ids[start : start + chunk_size].tolist(), n, out / f"part-{k:05d}.parquet")
        for k, start in enumerate(range(0, len(ids), chunk_size))
    ]
    dask.compute(*tasks, scheduler=client if client is not None else "synchronous")
    return out


def _score_chunk(model: Recommender, shopper_ids: list[str], n: int, path: Path) -> int:
    lists = model.recommend(shopper_ids, n=n)
    sizes = np.array([len(r) for r in lists], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "shopper_id": np.repeat(np.asarray(shopper_ids, dtype=object), sizes),
            "rank": np.concatenate([np.arange(1, s + 1) for s in sizes]) if len(sizes) else [],
            "product_id": [item for r in lists for item, _ in r],
            "score": np.array([score for r in lists for _, score in r], dtype=np.float64),
        },
        columns=list(COLUMNS),
    )
    frame = frame.astype({"shopper_id": str, "product_id": str, "rank": np.int32})
    frame.to_parquet(path, index=False)
    return len(frame)


def read_scores(path: str | Path) -> pd.DataFrame:
    """All precomputed lists, ordered by shopper and rank."""
    return pd.read_parquet(path).sort_values(["shopper_id", "rank"], kind="mergesort").reset_index(drop=True)
