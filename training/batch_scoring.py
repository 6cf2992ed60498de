"""Batch scoring: the top-N list of every shopper, precomputed into partitioned Parquet.

Shoppers are cut into fixed-size chunks; each chunk is one Dask task that calls the model's own
`recommend` and writes `part-NNNNN.parquet` (shopper_id, rank, product_id, score). Without a client
the tasks run here one after another; with a `distributed.Client` the fitted model is broadcast
once to every worker and the chunks run there (the workers must see `out_dir`); with `workers` > 1
and no client they run on that many threads here (the matrix products and the block top-n are numpy
calls that release the GIL). Memory per task is one chunk's candidate scores, whatever the number of
shoppers.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from commerce.files import staged_directory
from commerce.inputs import check_marketplace, marketplace_dir, traced_to_inputs
from features.cluster import STALL_SECONDS, compute_on
from models.recommenders.base import Recommender
from models.recommenders.common import MatrixRecommender

COLUMNS = ("shopper_id", "rank", "product_id", "score")


def score_all(
    model: Recommender,
    out_dir: str | Path,
    *,
    n: int = 20,
    shopper_ids: Sequence[str] | None = None,
    chunk_size: int = 5_000,
    client=None,
    workers: int = 1,
    stall_seconds: float = STALL_SECONDS,
) -> Path:
    """Write the top-`n` unseen items of every shopper the model knows (or of `shopper_ids`) to
    `out_dir/part-*.parquet` (replacing earlier parts) and return `out_dir`. `stall_seconds`: on a
    cluster, give up when no task finished for that long (`compute_on`; above one chunk's time)."""
    import dask

    if n < 1 or chunk_size < 1 or workers < 1:
        raise ValueError(f"n, chunk_size and workers must be >= 1, got {n}, {chunk_size}, {workers}")
    ids = np.asarray(
        shopper_ids if shopper_ids is not None else getattr(model, "user_ids_", []), dtype=object
    )
    if len(ids) == 0:
        raise ValueError("no shoppers to score: pass shopper_ids or a fitted model that knows its shoppers")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # The model enters the graph once, under a random key: as a plain argument Dask would hash all of
    # it for every chunk's task (~6 s each for a 1M-shopper ALS model, longer than the scoring).
    shared = client.scatter(model, broadcast=True) if client is not None else dask.delayed(model, pure=False)
    task = dask.delayed(_score_chunk, pure=True)
    tasks = [
        task(shared, ids[start : start + chunk_size].tolist(), n, out / f"part-{k:05d}.parquet")
        for k, start in enumerate(range(0, len(ids), chunk_size))
    ]
    if client is not None:
        compute_on(client, tasks, what="batch-score", stall_seconds=stall_seconds)
    elif workers > 1:
        dask.compute(*tasks, scheduler="threads", num_workers=workers)
    else:
        dask.compute(*tasks, scheduler="synchronous")
    return out


def _score_chunk(model: Recommender, shopper_ids: list[str], n: int, path: Path) -> int:
    frame = (
        _ranked_arrays(model, shopper_ids, n)
        if _ranks_in_blocks(model)
        else _ranked_lists(model, shopper_ids, n)
    )
    frame = frame.astype({"shopper_id": str, "product_id": str, "rank": np.int32})
    frame.to_parquet(path, index=False)
    return len(frame)


def _ranks_in_blocks(model: Recommender) -> bool:
    """True when the model ranks with `MatrixRecommender`'s own rule (not an override such as the
    two-stage ranker's): its lists can then be read as arrays from `ranked_blocks`."""
    return isinstance(model, MatrixRecommender) and type(model).recommend is MatrixRecommender.recommend


def _ranked_arrays(model: MatrixRecommender, shopper_ids: list[str], n: int) -> pd.DataFrame:
    """The chunk's lists straight from `ranked_blocks` (one matrix product and one block top-n per
    `_BATCH` shoppers, no per-shopper Python): the same rows as `recommend`."""
    index = model.user_index_
    ids = np.asarray(shopper_ids, dtype=object)
    known = np.fromiter((u in index for u in shopper_ids), dtype=bool, count=len(ids))
    rows = np.fromiter((index[u] for u in ids[known]), dtype=np.int64, count=int(known.sum()))
    parts = []
    for block, cols, counts, scores in model.ranked_blocks(rows, n):
        valid = cols >= 0
        who = np.repeat(ids[known][block], counts)
        parts.append(
            pd.DataFrame(
                {
                    "shopper_id": who,
                    "rank": np.nonzero(valid)[1] + 1,
                    "product_id": model.item_ids_[cols[valid]],
                    "score": scores[np.nonzero(valid)[0], cols[valid]].astype(np.float64),
                },
                columns=list(COLUMNS),
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else _ranked_lists(model, [], n)


def _ranked_lists(model: Recommender, shopper_ids: list[str], n: int) -> pd.DataFrame:
    lists = model.recommend(shopper_ids, n=n) if shopper_ids else []
    sizes = np.array([len(r) for r in lists], dtype=np.int64)
    return pd.DataFrame(
        {
            "shopper_id": np.repeat(np.asarray(shopper_ids, dtype=object), sizes),
            "rank": np.concatenate([np.arange(1, s + 1) for s in sizes]) if len(sizes) else [],
            "product_id": [item for r in lists for item, _ in r],
            "score": np.array([score for r in lists for _, score in r], dtype=np.float64),
        },
        columns=list(COLUMNS),
    )


def read_scores(path: str | Path) -> pd.DataFrame:
    """All precomputed lists, ordered by shopper and rank."""
    return pd.read_parquet(path).sort_values(["shopper_id", "rank"], kind="mergesort").reset_index(drop=True)


#: The marketplace inputs (commerce.inputs.INPUTS) `score_coupon_uplift` reads.
COUPON_INPUTS = ("events", "shoppers.parquet")


def coupon_as_of(data_dir: str | Path, as_of=None) -> pd.Timestamp:
    """What `score_coupon_uplift` checks before writing anything, and the time it scores at. Its inputs:
    whole Parquet of the contract's columns (`check_marketplace`; their pages are read once, by the
    scoring, where a damaged one is traced to its file). The time: `as_of`, else the marketplace's end
    (manifest.json: what `training.uplift` trains at), else just after the last event (`crosscart
    batch-score` took the wall clock: every shopper of an export read as inactive since it was made);
    within the events (`check_window`: not before the first, in the future, or more than
    AS_OF_TOLERANCE_DAYS after the last). `crosscart batch-score` calls it before it publishes the lists
    too, so a bad `--data` or `--as-of` changes nothing."""
    import json

    from features.tables import check_window, event_span

    data = marketplace_dir(data_dir)
    check_marketplace(data, COUPON_INPUTS, decode=False)
    if as_of is None:
        manifest = data / "manifest.json"
        if manifest.exists():
            as_of = json.loads(manifest.read_text())["end"]
        else:  # no event at all: now, refused by check_window as a window with none before it
            last = event_span(data)[1]
            as_of = pd.Timestamp.now("UTC") if last is None else last + pd.Timedelta(microseconds=1)
    as_of = pd.Timestamp(as_of)
    check_window(data, as_of)
    return as_of


def score_coupon_uplift(
    model,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    as_of,
    channel: str = "site",
    partitions: int | None = None,
) -> Path:
    """Every shopper's uplift per coupon kind (the model's arms) as of `as_of`, into
    `out_dir/part-NNNNN.parquet` (shopper_id, one column per kind), one part per shopper partition.

    The features are the served model's (`shopper_history_features` of each shopper's events before
    `as_of`, encoded to the model's columns), computed a shopper partition at a time
    (`features.distributed.ShopperPartitions`) and scored with one `predict_uplift` call per
    partition, so memory is one partition's events whatever the number of shoppers. The parts are
    published together when all are written (`commerce.files.staged_directory`): a run that fails
    leaves the previous scores whole, where it left them removed and its own parts half written; so does
    an `as_of` before every event (`check_window`), which scored every shopper as one without history."""
    out = Path(out_dir)
    with staged_directory(out) as staging:
        write_coupon_uplift(model, data_dir, staging, as_of=as_of, channel=channel, partitions=partitions)
    return out


def write_coupon_uplift(
    model, data_dir: str | Path, staging: Path, *, as_of, channel: str = "site", partitions: int | None = None
) -> None:
    """`score_coupon_uplift`'s parts, written into `staging`, a directory the caller publishes: a caller
    publishing other outputs with them (`batch-score`'s lists) publishes all or none."""
    from features.campaign_features import encode_features, shopper_history_features
    from features.distributed import ShopperPartitions

    data = Path(data_dir)
    as_of = coupon_as_of(data, as_of)
    arms = [str(a) for a in model.arms_ if str(a) != "control"]
    columns = list(model.feature_names_in_)
    n = partitions or max(1, len(list((data / "events").glob("*.parquet"))))
    with (
        traced_to_inputs(*(data / name for name in COUPON_INPUTS)),  # a damaged page: the file named
        ShopperPartitions(data, n, workdir=staging) as parts,
    ):
        for i, events, shoppers in parts:
            if shoppers.empty:
                continue
            events = events.astype({"shopper_id": str, "product_id": str})
            X = encode_features(shopper_history_features(events, shoppers, as_of, channel), columns)
            scores = np.asarray(model.predict_uplift(X), dtype=np.float64).reshape(len(X), -1)
            frame = pd.DataFrame(scores, columns=arms, index=X.index.astype(str))
            frame.rename_axis("shopper_id").reset_index().to_parquet(
                staging / f"part-{i:05d}.parquet", index=False
            )
