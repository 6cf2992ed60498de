"""Precomputed top-N lists (`crosscart batch-score`), served instead of scoring online when present.

batch-score writes `part-*.parquet` (shopper_id, rank, product_id, score) and `_precomputed.json` naming
the registered model and version that made them, and with `--redis` copies both to Redis for replicas that
share no storage. A replica loads them into memory (sorted shopper ids and flat arrays: about 40 bytes a
row) and reloads when a new batch lands: no request waits on Redis or on the disk. A list is served only
while the replica serves the same model version (a new champion makes them stale, so online scoring
answers until batch-score runs again), and it passes through the same serving rules as an online list
(stock, category, fulfillment, sponsored slots, popularity fill), so the page differs only in where its
scores came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from commerce.files import atomic_path

META_FILE = "_precomputed.json"  # pyarrow skips files starting with "_" when reading the parts
COLUMNS = ("shopper_id", "rank", "product_id", "score")


class BatchMissing(LookupError):
    """The published batch, or some of its parts, is gone from Redis (flushed, restarted, evicted):
    `/ready` says `missing` (`serving.refresh.failure_code`)."""


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
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"model": model, "version": str(version), "n": n}))
    return path


def load_precomputed(
    directory: str | Path, current: PrecomputedLists | None = None
) -> PrecomputedLists | None:
    """The lists in `directory`, or None when there are none; `current` is returned as is when the
    batch has not changed since it was loaded."""
    import pandas as pd

    directory = Path(directory).resolve()  # one batch: batch-score's swap relinks `directory`
    meta_path = directory / META_FILE
    if not meta_path.exists():
        return None
    stamp = meta_path.stat().st_mtime
    if current is not None and current.stamp == stamp:
        return current
    meta = json.loads(meta_path.read_text())
    return _build(meta, stamp, pd.read_parquet(directory, columns=list(COLUMNS)))


REDIS_META = "crosscart:precomputed:meta"  # JSON: model, version, n, stamp, parts (the key of the parts)
#: The longest a batch's move to or from Redis waits for it to connect, or to answer one socket read or
#: write (parts are megabytes: each read waits at most this). The load waited 30 s a read, and the API's
#: start waits for the first load: a replica started while Redis was frozen answered nothing, `/health`
#: included, for 31 s; batch-score's publish (redis-py 5-7's defaults) waited for ever.
BATCH_IO_SECONDS = 5.0


def _batch_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=BATCH_IO_SECONDS, socket_timeout=BATCH_IO_SECONDS)


def publish_to_redis(directory: str | Path, url: str) -> int:
    """Copy the batch in `directory` (parts and meta) to Redis, for replicas without shared storage;
    returns the number of parts. The new parts go under a key of their own and the meta is switched to
    them in one SET, so a replica never reads half of two batches; the previous batch's parts expire.
    Raises, leaving the previous batch published, when Redis evicted part of the new one as it was
    written (a full Redis with an evicting `maxmemory-policy`): replicas took half a batch for a whole
    one. The meta holds the part count, which `load_precomputed_redis` checks too."""
    import time

    directory = Path(directory).resolve()  # one batch: batch-score's swap relinks `directory`
    meta = json.loads((directory / META_FILE).read_text())
    stamp = time.time()
    parts_key = f"crosscart:precomputed:parts:{stamp:.6f}"
    client = _batch_client(url)
    previous = client.get(REDIS_META)
    pipe = client.pipeline(transaction=False)
    parts = sorted(directory.glob("part-*.parquet"))
    for part in parts:
        pipe.rpush(parts_key, part.read_bytes())
    pipe.llen(parts_key)
    stored = pipe.execute()[-1]
    if stored != len(parts):
        client.delete(parts_key)
        client.close()
        raise RuntimeError(
            f"Redis kept {stored} of the batch's {len(parts)} parts (it evicted the rest: it is full and its "
            "maxmemory-policy evicts keys); the previous batch stays published"
        )
    client.set(REDIS_META, json.dumps({**meta, "stamp": stamp, "parts": parts_key, "count": len(parts)}))
    if previous is not None:  # replicas loading it right now get a minute to finish
        client.expire(json.loads(previous)["parts"], 60)
    client.close()
    return len(parts)


def load_precomputed_redis(url: str, current: PrecomputedLists | None = None) -> PrecomputedLists | None:
    """The batch `publish_to_redis` last published, or None; `current` when it is still that batch.
    Raises when the batch `current` came from is gone (Redis flushed, or restarted without persistence),
    so that the replica keeps serving it rather than scoring every page online until the next publish,
    and when the published batch lacks parts (evicted by a full Redis): never half a batch."""
    import io

    import pandas as pd

    client = _batch_client(url)
    try:
        raw = client.get(REDIS_META)
        if raw is None:
            if current is not None:
                raise BatchMissing(
                    "the published batch is gone from Redis (flushed or restarted): serving the loaded "
                    "one until `crosscart batch-score --redis` publishes again"
                )
            return None
        meta = json.loads(raw)
        if current is not None and current.stamp == meta["stamp"]:
            return current
        blobs = client.lrange(meta["parts"], 0, -1)
    finally:
        client.close()
    if len(blobs) != meta.get("count", len(blobs)) or not blobs:
        raise BatchMissing(
            f"Redis holds {len(blobs)} of the published batch's {meta.get('count', '?')} parts (evicted: "
            "give Redis room or maxmemory-policy noeviction); "
            + ("serving the loaded one" if current is not None else "scoring online")
            + " until `crosscart batch-score --redis` publishes again"
        )
    frames = [pd.read_parquet(io.BytesIO(blob), columns=list(COLUMNS)) for blob in blobs]
    return _build(meta, meta["stamp"], pd.concat(frames, ignore_index=True))


def _build(meta: dict, stamp: float, frame) -> PrecomputedLists:
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
