"""Metrics that tell buying again from discovering, for lists that may hold a shopper's past items.

`history[user]` is what the user bought (or interacted with) before the target period; a target item
in it is a *repeat*, any other an *explore* item. Li et al. (TOIS 2023) report both parts, because a
model can look strong overall only by recommending what the shopper already buys.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from experiments.metrics import ranking_metrics


def basket_metrics(
    recommended: Mapping[str, Sequence[str]],
    targets: Mapping[str, Collection[str]],
    history: Mapping[str, Collection[str]],
    k: int = 10,
) -> dict[str, float]:
    """Next-basket metrics at k, averaged over every target user (a missing or empty list scores 0).

    - `recall@k`: hits in the top k / size of the target basket; `ndcg@k`: binary gain, log2
      discount, ideal DCG over min(k, basket size) positions; `phr@k`: share of users with a hit.
    - `repeat_recall@k` / `explore_recall@k`: the same recall on the repeat / explore part of the
      target, averaged over the users whose target has such a part (`n_repeat_users`,
      `n_explore_users`); `repeat_share@k`: share of recommended items that are repeats.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)
    recall, ndcg, phr, share = [], [], [], []
    rep_recall, exp_recall = [], []
    for user, target in targets.items():
        target = set(target)
        if not target:
            continue
        top = list(recommended.get(user, ()))[:k]
        if len(set(top)) != len(top):
            raise ValueError(f"the list for user {user!r} recommends an item twice: {top}")
        seen = set(history.get(user, ()))
        hits = np.fromiter((item in target for item in top), dtype=bool, count=len(top))
        recall.append(hits.sum() / len(target))
        ndcg.append(float(discount[: len(top)][hits].sum() / ideal[min(k, len(target)) - 1]))
        phr.append(float(hits.any()))
        if top:
            share.append(sum(item in seen for item in top) / len(top))
        found = set(top) & target
        repeat, explore = target & seen, target - seen
        if repeat:
            rep_recall.append(len(found & repeat) / len(repeat))
        if explore:
            exp_recall.append(len(found & explore) / len(explore))

    def mean(values: list) -> float:
        return float(np.mean(values)) if values else 0.0

    return {
        f"recall@{k}": mean(recall),
        f"ndcg@{k}": mean(ndcg),
        f"phr@{k}": mean(phr),
        f"repeat_recall@{k}": mean(rep_recall),
        f"explore_recall@{k}": mean(exp_recall),
        f"repeat_share@{k}": mean(share),
        "n_users": len(recall),
        "n_repeat_users": len(rep_recall),
        "n_explore_users": len(exp_recall),
    }


def split_ranking_metrics(
    recommended: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Collection[str]],
    history: Mapping[str, Collection[str]],
    k: int = 10,
) -> dict[str, float]:
    """`experiments.metrics.ranking_metrics` on the repeat part and on the explore part of each user's
    relevant items, keys prefixed `repeat_` / `explore_` (users without such a part are not scored in
    it; the lists are the same full lists)."""
    out: dict[str, float] = {}
    for part, keep in (("repeat", True), ("explore", False)):
        relevant_part = {}
        for user, items in relevant.items():
            seen = history.get(user, ())
            chosen = {item for item in items if (item in seen) == keep}
            if chosen:
                relevant_part[user] = chosen
        figures = ranking_metrics(recommended, relevant_part, k)
        out.update({f"{part}_{name}": value for name, value in figures.items()})
    return out
