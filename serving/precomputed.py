"""Precomputed top-N lists (`crosscart batch-score`), served instead of scoring online when present.

batch-score writes `part-*.parquet` (shopper_id, rank, product_id, score) and `_precomputed.json` naming
the registered model and version that made them. A replica loads them into memory (sorted shopper ids and
flat arrays: about 40 bytes a row) and reloads when that file changes. A list is served only while the
replica serves the same model version (a new champion makes them stale, so online scoring answers until
batch-score runs again), and it passes through the same serving rules as an online list (stock, category,
fulfillment, sponsored slots, popularity fill), so the page differs only in where its scores came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

META_FILE = "_precomputed.json"  # pyarrow skips files starting with "_" when reading the parts


@dataclass(frozen=True)
class PrecomputedLists:
    model: str  # registered model name
    version: str
    n: int
    stamp: float  # the meta file's modification time, to notice a new batch
    shoppers: np.ndarray  # sorted unique shopper ids
    starts: np.ndarray  # shoppers[i]'s rows are products[starts[i]:starts[i + 1]]
    products: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.shoppers)

    def lookup(self, shopper_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(product ids, scores) best first, or None for a shopper without a list."""
        i = int(np.searchsorted(self.shoppers, shopper_id))
        if i == len(self.shoppers) or self.shoppers[i] != shopper_id:
            return None
        return self.products[self.starts[i] : self.starts[i + 1]], self.scores[
            self.starts[i] : self.starts[i + 1]
        ]


def write_meta(directory: str | Path, model: str, version: str, n: int) -> Path:
    """Record which model version made the lists in `directory` (batch-score calls this last)."""
    path = Path(directory) / META_FILE
    path.write_text(json.dumps({"model": model, "version": str(version), "n": n}))
    return path


def load_precomputed(
    directory: str | Path, current: PrecomputedLists | None = None
) -> PrecomputedLists | None:
    """The lists in `directory`, or None when there are none; `current` is returned as is when the
    batch has not changed since it was loaded."""
    import pandas as pd

    meta_path = Path(directory) / META_FILE
    if not meta_path.exists():
        return None
    stamp = meta_path.stat().st_mtime
    if current is not None and current.stamp == stamp:
        return current
    meta = json.loads(meta_path.read_text())
    frame = pd.read_parquet(directory, columns=["shopper_id", "rank", "product_id", "score"])
    frame = frame.sort_values(["shopper_id", "rank"], kind="stable")
    ids = frame["shopper_id"].to_numpy(dtype=str)
    shoppers, starts = np.unique(ids, return_index=True)
    return PrecomputedLists(
        model=meta["model"],
        version=str(meta["version"]),
        n=int(meta["n"]),
        stamp=stamp,
        shoppers=shoppers,
        starts=np.append(starts, len(ids)).astype(np.int64),
        products=frame["product_id"].to_numpy(dtype=object),
        scores=frame["score"].to_numpy(dtype=np.float64),
    )
