"""The feature job out of core, in-process or on Dask: partitioned Parquet in, partitioned Parquet out.

One code path for every size: the event log (`events/` of a generated marketplace, any number of
part files, partitioned any way) is hash-partitioned by shopper (how: below), and the shopper table
with the same hash, so each partition holds whole shoppers. Per partition, the ordinary pandas
feature functions run unchanged (`features.tables`, `features.interactions`):
- `interactions/`: one row per (shopper_id, product_id) with its summed event weight, as
  `build_interactions` computes it (`read_interactions` turns it back into `InteractionData`);
- `shopper_features/`: `shopper_features` rows, exact because no shopper spans two partitions;
- `product_features/`: per-partition `product_event_counts` are additive over disjoint shopper sets,
  so they are summed in a tree and finished once (`product_features_from_counts`).
Events are sorted inside each partition first, so float sums do not depend on arrival order: the same
input gives equal outputs in-process and on any cluster. With a client (`features.cluster.dask_client`)
the job is a Dask graph on its workers (peer-to-peer shuffle), which must see the same paths. Without
one it streams in this process: the event log is read in Arrow batches and each batch's rows are
appended to one Arrow file per partition on disk, then the partitions run one after another and the
product counts are summed in the same tree as on a cluster, so memory is one batch, then one
partition, whatever the size of the log (with Dask's synchronous scheduler and disk shuffle instead,
the peak grew with the log: 1.1 GB at 1M events, 3.5 GB at 10M, past 10 GB at 51M; docs/scale.md).
Every output is written into a directory beside it and published when the whole job has succeeded
(`commerce.files.staged_directory`): a job that fails (a Dask worker killed past the scheduler's
retries, a full disk, a cluster on which nothing finished for `stall_seconds`: `compute_on`) leaves
the previous outputs whole instead of removed and half rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from commerce.files import made_directory, staged_directory
from commerce.inputs import check_marketplace, marketplace_dir, traced_to_inputs
from features.cluster import STALL_SECONDS, compute_on
from features.interactions import DEFAULT_EVENT_WEIGHTS, InteractionData, build_interactions, encode_ids
from features.tables import (
    EVENT_COLUMNS,
    FEATURE_INPUTS,
    as_utc,
    check_label_window,
    check_window,
    compact_events,
    events_before,
    product_event_counts,
    product_features_from_counts,
    shopper_features,
)
from features.training_sets import join_feature_snapshots, pair_features, validate_labels

OUTPUTS = ("interactions", "shopper_features", "product_features")
SORT_KEYS = ["shopper_id", "ts", "product_id", "event_type", "value"]
COMBINE_FAN_IN = 8


def run_feature_job(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    as_of=None,
    client=None,
    partitions: int | None = None,
    event_weights: Mapping[str, float] | None = None,
    half_life_days: float | None = None,
    stall_seconds: float = STALL_SECONDS,
) -> dict[str, Path]:
    """Write interactions/, shopper_features/ and product_features/ (Parquet part files) under `out_dir`.

    `as_of`: use events strictly before it (default: just after the last event). `client`: a
    `distributed.Client` to run on (None: in-process, streaming). `partitions`: shopper partitions
    (default: the number of event part files); memory per task is about one partition's events.
    `stall_seconds`: on a cluster, give up when no task finished for that long (`compute_on`).
    """
    data, out = marketplace_dir(data_dir), Path(out_dir)
    check_marketplace(data, FEATURE_INPUTS, decode=False)  # out of core: pages are read once, by the job
    if as_of is not None:
        check_window(data, as_of)
    weights = dict(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights)
    n = partitions or len(list((data / "events").glob("*.parquet")))
    if n < 1:
        raise ValueError(f"partitions must be >= 1, got {n}")
    with ExitStack() as stack:  # published together once every part is written (see the module)
        stack.enter_context(made_directory(out))
        # a damaged page is found where it is read: the staged parts dropped, the file named
        stack.enter_context(traced_to_inputs(*(data / name for name in FEATURE_INPUTS)))
        products = pd.read_parquet(data / "products.parquet")
        categories = pd.read_parquet(data / "categories.parquet")
        dirs = {name: stack.enter_context(staged_directory(out / name)) for name in OUTPUTS}
        job = (weights, half_life_days, dirs)
        if client is None:  # the spill in a staged output: a killed job's goes at the next write of it
            _stream_feature_job(data, dirs["interactions"], as_of, n, products, categories, job)
        else:
            _dask_feature_job(data, as_of, n, products, categories, job, client, stall_seconds)
    return {name: out / name for name in OUTPUTS}


def _stream_feature_job(data: Path, workdir: Path, as_of, n: int, products, categories, job) -> None:
    """The feature job in this process: the shopper partitions one by one (`ShopperPartitions`, its
    spill in `workdir`), product counts summed as they come."""
    with ShopperPartitions(data, n, workdir=workdir) as parts:
        as_of = as_utc(parts.last_ts + pd.Timedelta(microseconds=1) if as_of is None else as_of)
        counts = _TreeSum(n)
        for i, events, shoppers in parts:
            counts.add(_partition_job(events, shoppers, products, categories, as_of, *job, i))
    _write_product_features(counts.total, products, categories, as_of, job[2])


class ShopperPartitions:
    """A marketplace's events and shoppers cut into `n` shopper partitions on disk, read back one at a
    time: `with ShopperPartitions(data, n) as parts: for i, events, shoppers in parts: ...`.

    On entry the event log (`data/events`, EVENT_COLUMNS) and `shoppers.parquet` are read in Arrow
    batches and each batch's rows appended to one Arrow file per partition (`shopper_buckets`, the
    hash the cluster shuffle uses) under a temporary directory in `workdir`, removed on exit; so
    memory is one batch while cutting and one partition while reading, whatever the size of the log.
    A killed process does not exit: callers put the spill in a `staged_directory` they write, which
    the next write of that output removes (in the job's `--out` itself, each kill left a copy of the
    events, 2.3x their Parquet size, for good). `last_ts` is the latest event time (None without
    events)."""

    def __init__(self, data_dir: str | Path, n: int, *, workdir: str | Path | None = None):
        self.data, self.n, self.workdir = Path(data_dir), n, workdir
        self.last_ts: pd.Timestamp | None = None

    def __enter__(self) -> ShopperPartitions:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(dir=self.workdir, prefix="_partitions-")
        self.spill = Path(self._tmp.name)
        try:  # `__exit__` does not run when entering fails: a damaged page or a full disk left the spill
            self.last_ts = _spill_by_shopper(
                self.data / "events", list(EVENT_COLUMNS), self.n, self.spill / "events"
            )
            _spill_by_shopper(self.data / "shoppers.parquet", None, self.n, self.spill / "shoppers")
        except BaseException:
            self._tmp.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def __iter__(self):
        for i in range(self.n):
            name = f"{i:05d}.arrow"
            yield i, _read_spill(self.spill / "events" / name), _read_spill(self.spill / "shoppers" / name)


def _spill_by_shopper(source: Path, columns: list[str] | None, n: int, spill: Path) -> pd.Timestamp | None:
    """Append `source`'s rows (Parquet file or directory) to `spill/NNNNN.arrow`, one Arrow file per
    shopper partition; return the largest `ts` if there is one."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(source, format="parquet")
    names = columns or dataset.schema.names
    schema = pa.schema([dataset.schema.field(c) for c in names])  # no pandas metadata: a plain index
    spill.mkdir(parents=True)
    writers = [pa.ipc.new_file(spill / f"{i:05d}.arrow", schema) for i in range(n)]
    last = None
    try:
        batches = dataset.to_batches(
            columns=names, batch_size=1 << 18, batch_readahead=1, fragment_readahead=1
        )
        for batch in batches:
            table = pa.Table.from_batches([batch], schema=schema)
            if "ts" in names and batch.num_rows:
                top = pc.max(table["ts"])
                last = top if last is None or pc.greater(top, last).as_py() else last
            bucket = shopper_buckets(table["shopper_id"].to_pandas(), n)
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(n + 1))
            table = table.take(order)
            for i in np.flatnonzero(np.diff(bounds)):
                writers[i].write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]))
    finally:
        for writer in writers:
            writer.close()
    if last is None:
        return None
    return pd.Series(pa.array([last.value], type=last.type).to_pandas()).iloc[0]


def _read_spill(path: Path) -> pd.DataFrame:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all().to_pandas()


class _TreeSum:
    """Sums per-partition product counts in the tree `_dask_feature_job` builds (groups of
    COMBINE_FAN_IN consecutive partials per level), as they arrive: float sums match the cluster run
    bit for bit, and at most COMBINE_FAN_IN - 1 partials per level are held."""

    def __init__(self, n: int):
        self.sizes = [n]
        while self.sizes[-1] > 1:
            self.sizes.append(-(-self.sizes[-1] // COMBINE_FAN_IN))
        self.pending: list[list[pd.DataFrame]] = [[] for _ in self.sizes]
        self.seen = [0 for _ in self.sizes]
        self.total: pd.DataFrame | None = None

    def add(self, counts: pd.DataFrame, level: int = 0) -> None:
        if level == len(self.sizes) - 1:
            self.total = counts
            return
        self.pending[level].append(counts)
        self.seen[level] += 1
        if len(self.pending[level]) == COMBINE_FAN_IN or self.seen[level] == self.sizes[level]:
            group, self.pending[level] = self.pending[level], []
            self.add(_combine_counts(group), level + 1)


def _dask_feature_job(data: Path, as_of, n: int, products, categories, job, client, stall_seconds) -> None:
    """The feature job as one Dask graph on `client`'s workers (peer-to-peer shuffle by shopper)."""
    import dask
    import dask.dataframe as dd

    with dask.config.set({"dataframe.convert-string": False}):
        events = dd.read_parquet(data / "events", columns=list(EVENT_COLUMNS))
        if as_of is None:
            (last,) = compute_on(
                client, [events["ts"].max()], what="feature job", stall_seconds=stall_seconds
            )
            as_of = pd.Timestamp(last) + pd.Timedelta(microseconds=1)
        as_of = as_utc(as_of)
        by_shopper = _by_shopper(events, n, "p2p")
        shoppers = _by_shopper(dd.read_parquet(data / "shoppers.parquet"), n, "p2p")
        catalog = dask.delayed(products, pure=True)
        tree = dask.delayed(categories, pure=True)
        weights, half_life_days, dirs = job
        part = dask.delayed(_partition_job, pure=True)
        partials = [
            part(ev, sh, catalog, tree, as_of, weights, half_life_days, dirs, i)
            for i, (ev, sh) in enumerate(zip(by_shopper.to_delayed(), shoppers.to_delayed(), strict=True))
        ]
        combine = dask.delayed(_combine_counts, pure=True)
        while len(partials) > 1:
            partials = [
                combine(partials[i : i + COMBINE_FAN_IN]) for i in range(0, len(partials), COMBINE_FAN_IN)
            ]
        final = dask.delayed(_write_product_features, pure=True)(partials[0], catalog, tree, as_of, dirs)
        compute_on(client, [final], what="feature job", stall_seconds=stall_seconds)


def _by_shopper(frame, n: int, method: str):
    """`frame` hash-partitioned into `n` partitions by shopper_id (the same hash for every frame)."""
    meta = frame._meta.assign(bucket=np.int64(0))
    bucketed = frame.map_partitions(_with_bucket, n, meta=meta)
    return bucketed.shuffle(on="bucket", npartitions=n, shuffle_method=method)


def _with_bucket(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame.assign(bucket=shopper_buckets(frame["shopper_id"], n))


def shopper_buckets(shopper_ids: pd.Series, n: int) -> np.ndarray:
    """The shopper partition (0..n-1) of each id: one hash for every frame, in-process or on a cluster."""
    ids = shopper_ids.astype(str)
    return (pd.util.hash_pandas_object(ids, index=False).to_numpy() % np.uint64(n)).astype(np.int64)


def _partition_job(
    events: pd.DataFrame,
    shoppers: pd.DataFrame,
    products: pd.DataFrame,
    categories: pd.DataFrame,
    as_of: pd.Timestamp,
    weights: dict[str, float],
    half_life_days: float | None,
    dirs: Mapping[str, Path],
    index: int,
) -> pd.DataFrame:
    """Write one shopper partition's interactions and shopper features; return its product counts."""
    events, shoppers = (f.drop(columns="bucket", errors="ignore") for f in (events, shoppers))
    ev = events_before(events, as_of)
    ev = ev.astype({c: str for c in ("shopper_id", "product_id", "event_type")})
    ev = ev.sort_values(SORT_KEYS, kind="mergesort").reset_index(drop=True)
    name = f"part-{index:05d}.parquet"
    _write(interaction_rows(ev, as_of, weights, half_life_days), dirs["interactions"] / name, index=False)
    table = shopper_features(ev, products, as_of, shoppers=shoppers, categories=categories)
    _write(table, dirs["shopper_features"] / name)
    return product_event_counts(ev, as_of)


def interaction_rows(
    events: pd.DataFrame, as_of: pd.Timestamp, weights: Mapping[str, float], half_life_days: float | None
) -> pd.DataFrame:
    """(shopper_id, product_id, weight float32) of the weighted events, as `build_interactions` sums them."""
    ev = events[events["event_type"].isin(list(weights))]
    if ev.empty:
        return pd.DataFrame(
            {
                "shopper_id": pd.Series(dtype=object),
                "product_id": pd.Series(dtype=object),
                "weight": pd.Series(dtype=np.float32),
            }
        )
    data = build_interactions(
        ev,
        user_col="shopper_id",
        item_col="product_id",
        value_col=None,
        event_weights=weights,
        half_life_days=half_life_days,
        as_of=as_of if half_life_days is not None else None,
    )
    coo = data.matrix.tocoo()
    return pd.DataFrame(
        {"shopper_id": data.user_ids[coo.row], "product_id": data.item_ids[coo.col], "weight": coo.data}
    )


def _write(frame: pd.DataFrame, path: Path, index: bool = True) -> None:
    """Parquet with one schema across parts: a text column that is all missing in this part stays
    string (pyarrow would type it null, and the part files would no longer read as one data set)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=index)
    schema = pa.schema(
        [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema],
        metadata=table.schema.metadata,
    )
    pq.write_table(table.cast(schema), path)


def _combine_counts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    stacked = pd.concat(parts)
    how = {c: ("max" if c == "last_purchase" else "sum") for c in stacked.columns}
    return stacked.groupby(level=0).agg(how)


def _write_product_features(
    counts: pd.DataFrame,
    products: pd.DataFrame,
    categories: pd.DataFrame,
    as_of: pd.Timestamp,
    dirs: Mapping[str, Path],
) -> int:
    table = product_features_from_counts(counts, products, as_of, categories=categories)
    _write(table, dirs["product_features"] / "part-00000.parquet")
    return len(table)


def run_training_set(
    data_dir: str | Path,
    labels: pd.DataFrame,
    out_dir: str | Path,
    *,
    client=None,
    partitions: int | None = None,
    snapshot_freq: str | None = "1D",
    stall_seconds: float = STALL_SECONDS,
) -> Path:
    """`features.training_sets.training_set` out of core: the same rows, as `out_dir/part-*.parquet`
    with a leading `label_row` (the row's position in `labels`; `read_training_set` restores the order).

    Labels, events and shoppers are partitioned by shopper with one hash; shopper and pair snapshots
    are exact per partition, product snapshots are per-partition `product_event_counts` (only for the
    products each snapshot's labels need) summed across partitions and finished once. Labels and the
    snapshots they need are held in memory (label-sized); events stream a partition at a time: without
    a client through `ShopperPartitions` (Dask's disk shuffle with the synchronous scheduler grew with
    the log, as in the feature job), with one as a Dask graph (peer-to-peer shuffle) on its workers.
    `partitions` defaults to the number of event part files in-process, to Dask's partitions on one.
    `stall_seconds`: on a cluster, give up when no task finished for that long (`compute_on`).
    """
    data, out = marketplace_dir(data_dir), Path(out_dir)
    check_marketplace(data, FEATURE_INPUTS, decode=False)  # out of core: pages are read once, by the job
    labels = validate_labels(labels).reset_index(drop=True)
    if labels.empty:
        raise ValueError(
            "no labels: a training set needs at least one (shopper_id, product_id, label_ts, label)"
        )
    check_label_window(data, labels)
    snap = labels["label_ts"] if snapshot_freq is None else labels["label_ts"].dt.floor(snapshot_freq)
    labels["_snapshot"] = snap
    labels["_row"] = np.arange(len(labels))
    needs = {as_of: group["product_id"].unique() for as_of, group in labels.groupby("_snapshot", sort=True)}
    with (
        traced_to_inputs(*(data / name for name in FEATURE_INPUTS)),  # a damaged page: the file named
        staged_directory(out) as staging,  # published once every part is written (see the module)
    ):
        products = pd.read_parquet(data / "products.parquet")
        categories = pd.read_parquet(data / "categories.parquet")
        if client is None:
            _stream_training_set(data, labels, staging, partitions, needs, products, categories)
        else:
            _dask_training_set(
                data, labels, staging, partitions, needs, products, categories, client, stall_seconds
            )
    return out


def _dask_training_set(
    data: Path, labels, out: Path, partitions, needs, products, categories, client, stall_seconds
) -> None:
    """`run_training_set` as one Dask graph on `client`'s workers (peer-to-peer shuffle by shopper)."""
    import dask
    import dask.dataframe as dd

    with dask.config.set({"dataframe.convert-string": False}):
        events = dd.read_parquet(data / "events", columns=list(EVENT_COLUMNS))
        n = partitions or events.npartitions
        parts = zip(
            _by_shopper(events, n, "p2p").to_delayed(),
            _by_shopper(dd.read_parquet(data / "shoppers.parquet"), n, "p2p").to_delayed(),
            _by_shopper(dd.from_pandas(labels, npartitions=1, sort=False), n, "p2p").to_delayed(),
            strict=True,
        )
        catalog, tree = dask.delayed(products, pure=True), dask.delayed(categories, pure=True)
        local = dask.delayed(_training_partition, pure=True, nout=2)
        snapshots = [local(ev, sh, lab, catalog, tree, needs) for ev, sh, lab in parts]
        product_snapshots = dask.delayed(_product_snapshots, pure=True)(
            [counts for counts, _ in snapshots], catalog, tree
        )
        join = dask.delayed(_join_partition, pure=True)
        writes = [join(rows, product_snapshots, out, i) for i, (_, rows) in enumerate(snapshots)]
        compute_on(client, writes, what="training set", stall_seconds=stall_seconds)


def _stream_training_set(data: Path, labels, out: Path, partitions, needs, products, categories) -> None:
    """`run_training_set` in this process: the shopper partitions one by one (`ShopperPartitions`), so
    memory is one partition's events plus the label-sized snapshots, whatever the size of the log."""
    n = partitions or len(list((data / "events").glob("*.parquet")))
    bucket = shopper_buckets(labels["shopper_id"], n)
    counts, rows = [], []
    with ShopperPartitions(data, n, workdir=out) as parts:
        for i, events, shoppers in parts:
            partial, mine = _training_partition(
                events, shoppers, labels[bucket == i], products, categories, needs
            )
            counts.append(partial)
            rows.append(mine)
    product_snapshots = _product_snapshots(counts, products, categories)
    for i, mine in enumerate(rows):
        _join_partition(mine, product_snapshots, out, i)


def _training_partition(events, shoppers, labels, products, categories, needs):
    """(product counts per snapshot, (labels, shopper snapshots, pair snapshots)) of one partition."""
    ev = compact_events(
        events.drop(columns="bucket", errors="ignore").astype({"shopper_id": str, "product_id": str})
    )
    ev = ev.sort_values(SORT_KEYS, kind="mergesort").reset_index(drop=True)
    counts = {
        as_of: product_event_counts(ev[ev["product_id"].isin(what)], as_of) for as_of, what in needs.items()
    }
    labels = labels.drop(columns="bucket", errors="ignore")
    shoppers = shoppers.drop(columns="bucket", errors="ignore")
    s_parts, pair_parts = [], []
    for as_of, group in labels.groupby("_snapshot", sort=True):
        who = group["shopper_id"].unique()
        ev_s = ev[ev["shopper_id"].isin(who)]
        sh = shoppers[shoppers["shopper_id"].isin(who)]
        s_parts.append(
            shopper_features(
                ev_s, products, as_of, shoppers=sh, categories=categories, shopper_ids=who
            ).reset_index()
        )
        pair_parts.append(pair_features(ev_s, group, products, as_of, categories=categories))
    if not s_parts:
        return counts, None
    return counts, (labels, pd.concat(s_parts, ignore_index=True), pd.concat(pair_parts, ignore_index=True))


def _product_snapshots(
    partials: list[dict], products: pd.DataFrame, categories: pd.DataFrame
) -> pd.DataFrame:
    frames = []
    for as_of in partials[0]:
        counts = _combine_counts([p[as_of] for p in partials])
        what = counts.index if len(counts) else []
        prod = products[products["product_id"].isin(what)]
        frames.append(product_features_from_counts(counts, prod, as_of, categories=categories).reset_index())
    return pd.concat(frames, ignore_index=True)


def _join_partition(rows, product_snapshots: pd.DataFrame, out: Path, index: int) -> int:
    if rows is None:
        return 0
    labels, shopper_snapshots, pair_snapshots = rows
    order = labels.sort_values(["_row"]).drop(columns=["_snapshot"])
    table = join_feature_snapshots(
        order.drop(columns="_row"), shopper_snapshots, product_snapshots, pair_snapshots
    )
    table.insert(0, "label_row", order["_row"].to_numpy())
    _write(table, out / f"part-{index:05d}.parquet", index=False)
    return len(table)


def read_training_set(path: str | Path) -> pd.DataFrame:
    """The `run_training_set` output in label order, as `training_set` returns it."""
    table = pd.read_parquet(path).sort_values("label_row", kind="mergesort")
    return table.drop(columns="label_row").reset_index(drop=True)


def read_interactions(path: str | Path) -> InteractionData:
    """The `interactions/` output as `InteractionData` (CSR over sorted string ids).

    Ids are read dictionary-encoded (categorical): one Python string per distinct id instead of one
    per row, which at 1M shoppers is gigabytes less."""
    rows = pd.read_parquet(path, read_dictionary=["shopper_id", "product_id"])
    user_codes, user_ids = encode_ids(rows["shopper_id"])
    item_codes, item_ids = encode_ids(rows["product_id"])
    import scipy.sparse as sp

    matrix = sp.csr_matrix(
        (rows["weight"].to_numpy(np.float32), (user_codes, item_codes)), shape=(len(user_ids), len(item_ids))
    )
    matrix.sort_indices()
    return InteractionData(matrix=matrix, user_ids=user_ids, item_ids=item_ids)
