"""Offline ranking metrics at k, as Microsoft Recommenders defines them, plus beyond-accuracy metrics.

Inputs are plain mappings: `recommended` user -> ranked item ids (best first), `relevant` user -> the
user's test items. Accuracy metrics are averaged over the users present in both with a non-empty list
(Recommenders' inner join): a user the model returns nothing for is not scored. Every test item counts
as relevant (binary relevance). Beyond-accuracy metrics read the top k of every non-empty list given.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

Recommended = Mapping[str, Sequence[str]]
Relevant = Mapping[str, Collection[str]]


def ranking_metrics(recommended: Recommended, relevant: Relevant, k: int = 10) -> dict[str, float]:
    """All accuracy metrics at once: `precision@k`, `recall@k`, `ndcg@k`, `map`, `hit_rate@k`, `mrr@k`
    and `n_users` (how many users were scored); zeros when no user can be scored.

    - precision@k: hits in the top k / k (k even when the list is shorter).
    - recall@k: hits / number of the user's relevant items.
    - ndcg@k: binary gain, log2 discount; ideal DCG over min(k, number relevant) positions.
    - map: sum over hit ranks r of (hits in the first r / r), divided by the number of relevant items
      (Recommenders' `map`, not `map_at_k`, which divides by min(k, n)).
    - hit_rate@k: share of users with at least one hit; mrr@k: mean 1 / rank of the first hit (0 if none).
    """
    _check_k(k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)
    sums = dict.fromkeys(("precision", "recall", "ndcg", "map", "hit_rate", "mrr"), 0.0)
    n_users = 0
    for user, items in recommended.items():
        truth = relevant.get(user)
        top = _top(items, k, user)
        if not top or not truth:
            continue
        n_users += 1
        hits = np.fromiter((item in truth for item in top), dtype=bool, count=len(top))
        n_hits, n_rel = int(hits.sum()), len(truth)
        sums["precision"] += n_hits / k
        sums["recall"] += n_hits / n_rel
        sums["ndcg"] += float(discount[: len(top)][hits].sum() / ideal[min(k, n_rel) - 1])
        if n_hits:
            ranks = np.flatnonzero(hits) + 1
            sums["map"] += float((np.arange(1, n_hits + 1) / ranks).sum()) / n_rel
            sums["hit_rate"] += 1.0
            sums["mrr"] += 1.0 / int(ranks[0])
    scale = 1.0 / n_users if n_users else 0.0
    return {
        f"precision@{k}": sums["precision"] * scale,
        f"recall@{k}": sums["recall"] * scale,
        f"ndcg@{k}": sums["ndcg"] * scale,
        "map": sums["map"] * scale,
        f"hit_rate@{k}": sums["hit_rate"] * scale,
        f"mrr@{k}": sums["mrr"] * scale,
        "n_users": n_users,
    }


def catalog_coverage(recommended: Recommended, catalog_size: int, k: int = 10) -> float:
    """Share of the catalog that appears in at least one top-k list (Recommenders' catalog_coverage)."""
    _check_k(k)
    if catalog_size <= 0:
        raise ValueError(f"catalog_size must be > 0, got {catalog_size}")
    shown = {item for user, items in recommended.items() for item in _top(items, k, user)}
    return len(shown) / catalog_size


def novelty(recommended: Recommended, item_counts: Mapping[str, int], n_users: int, k: int = 10) -> float:
    """Mean self-information -log2(p(i)) over all recommended (user, item) pairs, where p(i) is the
    share of the `n_users` training users who interacted with item i. An item no training user touched
    is scored as if one had (the largest finite value), so cold items raise novelty without being inf."""
    _check_k(k)
    if n_users <= 0:
        raise ValueError(f"n_users must be > 0, got {n_users}")
    counts = [
        item_counts.get(item, 0) for user, items in recommended.items() for item in _top(items, k, user)
    ]
    if not counts:
        return 0.0
    share = np.maximum(np.asarray(counts, dtype=np.float64), 1.0) / n_users
    return float(np.mean(-np.log2(share)))


def intra_list_diversity(
    recommended: Recommended,
    item_vectors: sp.spmatrix | np.ndarray,
    item_index: Mapping[str, int],
    k: int = 10,
) -> float:
    """Mean over lists (of 2+ items) of the mean pairwise cosine distance 1 - cos(v_i, v_j) in the top k.

    `item_vectors` rows describe items (genre flags or one-hot attributes, see `item_feature_vectors`,
    or the item's users for co-occurrence similarity, see `cooccurrence_vectors`); `item_index` maps
    item id -> row. An all-zero row is unlike everything (cosine 0). Cosines are computed only among
    the distinct items shown, then looked up per pair, so the cost does not grow with list count x
    item popularity.
    """
    _check_k(k)
    lists = [top for user, items in recommended.items() if len(top := _top(items, k, user)) >= 2]
    if not lists:
        return 0.0
    try:
        rows = np.fromiter((item_index[item] for top in lists for item in top), dtype=np.int64)
    except KeyError as exc:
        raise KeyError(f"no feature vector for recommended item {exc.args[0]!r}") from None
    shown, local = np.unique(rows, return_inverse=True)
    vectors = sp.csr_matrix(item_vectors, dtype=np.float64)[shown]
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ vectors
    cosine = (unit @ unit.T).tocsr()

    sizes = np.array([len(top) for top in lists])
    slots = np.full((len(lists), int(sizes.max())), -1, dtype=np.int64)  # local item per list position
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    slots[np.repeat(np.arange(len(lists)), sizes), np.arange(len(rows)) - starts] = local.ravel()
    pair_sum = np.zeros(len(lists))
    for second in range(1, slots.shape[1]):
        has = slots[:, second] >= 0  # positions before it are filled too
        for first in range(second):
            pair_sum[has] += np.asarray(cosine[slots[has, first], slots[has, second]]).ravel()
    return float(np.mean(1.0 - pair_sum / (sizes * (sizes - 1) / 2)))


def item_feature_vectors(item_features: pd.DataFrame) -> tuple[sp.csr_matrix, dict[str, int]]:
    """One row per item from its descriptive columns, for feature-based diversity; (vectors, index).

    0/1 numeric and boolean columns (MovieLens genre flags) are used as they are; text and categorical
    columns with repeated values (category, brand, origin, merchant...) become one-hot blocks. Other
    columns (prices, counts, dates, unique titles or SKUs) say nothing about "same kind" and are
    ignored. The matrix has no columns when nothing qualifies.
    """
    blocks = []
    for _, column in item_features.items():
        if pd.api.types.is_numeric_dtype(column):  # bools included
            if column.dropna().isin([0, 1]).all():
                blocks.append(sp.csr_matrix(column.fillna(0).to_numpy(dtype=np.float64).reshape(-1, 1)))
            continue
        # text held as object (pandas 2) or as the string dtype (pandas 3), or categorical
        is_label = isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.infer_dtype(
            column, skipna=True
        ) in ("string", "categorical")
        if is_label and column.nunique() < len(column):
            codes, _ = pd.factorize(column)
            known = codes >= 0
            shape = (len(column), int(codes.max()) + 1)
            blocks.append(sp.csr_matrix((np.ones(known.sum()), (np.flatnonzero(known), codes[known])), shape))
    vectors = sp.hstack(blocks, format="csr") if blocks else sp.csr_matrix((len(item_features), 0))
    return vectors, {str(item): row for row, item in enumerate(item_features.index)}


def cooccurrence_vectors(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Items x users 0/1 matrix: cosine between two rows is co-occurrence / sqrt(count_i x count_j)."""
    binary = sp.csr_matrix(matrix.T, dtype=np.float64, copy=True)
    binary.data = (binary.data > 0).astype(np.float64)
    binary.eliminate_zeros()
    return binary


def average_recommendation_popularity(
    recommended: Recommended, item_counts: Mapping[str, int], k: int = 10
) -> float:
    """ARP (Abdollahpouri et al.): mean over lists of the mean training interaction count of their items."""
    _check_k(k)
    return _mean_of_list_means(recommended, item_counts, k)


def popularity_percentile(recommended: Recommended, item_counts: Mapping[str, int], k: int = 10) -> float:
    """Mean over lists of the mean popularity percentile of their items (1.0 = the most popular item).

    Percentile = the item's popularity rank among `item_counts` / their number (ties share the average
    rank); items absent from `item_counts` get 0. Near 1 means the model mostly pushes best-sellers.
    """
    _check_k(k)
    pct = pd.Series(item_counts, dtype=np.float64).rank(pct=True).to_dict()
    return _mean_of_list_means(recommended, pct, k)


def _mean_of_list_means(recommended: Recommended, value: Mapping[str, float], k: int) -> float:
    """Mean over the non-empty top-k lists of the mean `value` of their items (absent items count 0)."""
    per_list = [
        np.mean([value.get(item, 0.0) for item in top])
        for user, items in recommended.items()
        if (top := _top(items, k, user))
    ]
    return float(np.mean(per_list)) if per_list else 0.0


def _top(items: Sequence[str], k: int, user: str) -> list[str]:
    top = list(items[:k])
    if len(set(top)) != len(top):
        raise ValueError(f"the list for user {user!r} recommends an item twice: {top}")
    return top


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
