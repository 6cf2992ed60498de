"""`auto`: choose the session model and its settings on the training data alone, then refit on all of it.

Published settings are tuned on someone else's data; session-rec tunes every model per data set on a
validation split carved from the training part. This does the same, cheaply:

1. Validation = training sessions ending in the last `validation_days` of the training data (the newest
   10% of sessions when that is empty or more than half), scored with the next-item protocol
   (`models.sessions.evaluation`) from models fitted on the older sessions; at most `max_predictions`
   predictions (whole sessions, sampled with `seed`).
2. Each neighbourhood candidate (V-SKNN, STAN, VSTAN; session-rec's defaults and a wider
   neighbourhood) ranks every validation prefix once; sequential rules too. Their top lists are kept, so
   every blend weight of a neighbourhood model with the rules (`WeightedHybrid`) is scored without
   predicting again.
3. The published baselines (sequential rules, each neighbourhood model at its published settings)
   set a bar on every `objective` term (hr@K / mrr@K); the best candidate by the sum of its terms as
   shares of their bars among those clearing the bar on every term (when none does, the one with the
   smallest worst shortfall, `choose`) is refitted on every training session. So auto does not trade
   hit rate for rank (or back) against any baseline it is meant to beat.

`chosen_` names the winner and `validation_` holds every candidate's score.
"""

from __future__ import annotations

import numpy as np

from models.sessions.base import SessionData, SessionRecommender
from models.sessions.evaluation import hit_rate_and_mrr, prefixes

DAY = 86_400.0
WIDE = {"k": 500, "sample_size": 2500}
NEIGHBOURHOODS: tuple[tuple[str, dict], ...] = (
    ("vsknn", {}),
    ("stan", {}),
    ("vstan", {}),
    ("vsknn", WIDE),
    ("stan", WIDE),
    ("vstan", WIDE),
)
RULE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # weight of sequential rules in the blend
LIST_LENGTH = 100  # kept per part and prediction; the blend reads only these


class AutoTuned(SessionRecommender):
    name = "auto"

    def __init__(
        self,
        objective: str = "hr@20+mrr@20",
        validation_days: float = 1.0,
        max_predictions: int = 3000,
        seed: int = 0,
    ):
        self.objective = objective
        self.validation_days = validation_days
        self.max_predictions = max_predictions
        self.seed = seed

    def _terms(self) -> list[tuple[str, int]]:
        terms = []
        for term in self.objective.split("+"):
            kind, _, cutoff = term.strip().partition("@")
            if kind not in ("hr", "mrr") or not cutoff.isdigit() or int(cutoff) < 1:
                raise ValueError(f"objective terms must be hr@K or mrr@K, got {term!r}")
            terms.append((kind, int(cutoff)))
        return terms

    def _fit(self, data: SessionData) -> None:
        from models.sessions import make_session_model

        terms = self._terms()
        if self.validation_days <= 0 or self.max_predictions < 1:
            raise ValueError("validation_days and max_predictions must be positive")
        older, validation = self._split(data)
        self.validation_ = []
        if older is None or validation is None:  # too little data to tune: VSTAN as published
            self.chosen_ = ("vstan", {})
        else:
            self.chosen_ = self._tune(older, validation, terms)
        name, params = self.chosen_
        self.model_ = make_session_model(name, **params).fit(data)

    def _split(self, data: SessionData) -> tuple[SessionData | None, SessionData | None]:
        """(older sessions, validation sessions on items the older ones know, 2+ clicks, sampled)."""
        order = np.argsort(data.session_time, kind="stable")
        cut = data.session_time.max() - self.validation_days * DAY
        n_val = int((data.session_time[order] >= cut).sum())
        if n_val == 0 or n_val > data.n_sessions // 2:
            n_val = data.n_sessions // 10
        if n_val < 1 or n_val == data.n_sessions:
            return None, None
        older = data.select(order[:-n_val])
        known = np.bincount(older.items, minlength=data.n_items) > 0
        validation = data.select(order[-n_val:], keep_click=known[data.items], min_length=2)
        if validation.n_sessions == 0:
            return None, None
        predictions = np.diff(validation.indptr) - 1
        if predictions.sum() > self.max_predictions:
            shuffled = np.random.default_rng(self.seed).permutation(validation.n_sessions)
            take = shuffled[np.cumsum(predictions[shuffled]) <= self.max_predictions]
            validation = validation.select(np.sort(take))
        return older, validation if validation.n_sessions else None

    def _tune(self, older: SessionData, validation: SessionData, terms) -> tuple[str, dict]:
        from models.sessions import make_session_model

        targets = np.array([target for _, target in prefixes(validation)])
        rules = _top_lists(make_session_model("sr").fit(older), validation)
        rows = [self._row("sr", {}, 1.0, _ranks(rules, [], 1.0, targets), terms)]
        for name, params in NEIGHBOURHOODS:
            lists = _top_lists(make_session_model(name, **params).fit(older), validation)
            for weight in RULE_WEIGHTS[:-1]:
                rows.append(self._row(name, params, weight, _ranks(rules, lists, weight, targets), terms))
        self.validation_ = rows
        best = choose(rows)
        if best["rule_weight"] == 1.0:
            return "sr", {}
        if best["rule_weight"] == 0:
            return best["model"], dict(best["params"])
        return _hybrid(best["model"], best["params"], best["rule_weight"])

    @staticmethod
    def _row(name: str, params: dict, weight: float, ranks: np.ndarray, terms) -> dict:
        values = {}
        for kind, cutoff in terms:
            hr, mrr = hit_rate_and_mrr(ranks, cutoff)
            values[f"{kind}@{cutoff}"] = hr if kind == "hr" else mrr
        row = {"model": name, "params": params, "rule_weight": weight, **values}
        return {**row, "terms": list(values), "score": sum(values.values())}

    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model_._scores(codes)


def choose(rows: list[dict]) -> dict:
    """The candidate to serve. The published baselines alone (sequential rules, and each neighbourhood
    model at session-rec's settings) set the bar on each term, every term measured as a share of its
    bar (so hr@20, about twice mrr@20, does not outweigh it). Candidates at or above the bar on every
    term compete by the sum of those shares; when none is, the smallest worst shortfall wins, so auto
    never serves a model far behind one baseline on one metric for a gain on another."""
    published = [r for r in rows if not r["params"] and r["rule_weight"] in (0.0, 1.0)]
    bar = {term: max(r[term] for r in published) for term in rows[0]["terms"]}

    def key(row: dict) -> tuple[float, float]:
        shares = [row[term] / value if value > 0 else 1.0 for term, value in bar.items()]
        return min(min(shares), 1.0), sum(shares)

    return max(rows, key=key)


def _hybrid(name: str, params: dict, rule_weight: float) -> tuple[str, dict]:
    return "hybrid", {
        "models": (name, "sr"),
        "weights": (round(1.0 - rule_weight, 4), rule_weight),
        "params": (dict(params), {}),
    }


def _top_lists(model: SessionRecommender, validation: SessionData) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each validation prefix's top LIST_LENGTH (codes, scores scaled to a best of 1)."""
    lists = []
    for prefix, _ in prefixes(validation):
        codes, scores = model.rank_codes(prefix, LIST_LENGTH)
        lists.append((codes, scores / scores[0] if len(scores) else scores))
    return lists


def _ranks(rules, lists, rule_weight: float, targets: np.ndarray) -> np.ndarray:
    """Target ranks of the blend (1 - w) x neighbourhood + w x rules, as WeightedHybrid ranks."""
    ranks = np.zeros(len(targets), dtype=np.int64)
    for p, target in enumerate(targets.tolist()):
        parts = [(rules[p], rule_weight)] if rule_weight > 0 else []
        if rule_weight < 1:
            parts.append((lists[p], 1.0 - rule_weight))
        codes = np.concatenate([c for (c, _), _ in parts])
        if not len(codes) or target not in codes:
            continue
        scores = np.concatenate([s * w for (_, s), w in parts])
        uniq, inverse = np.unique(codes, return_inverse=True)
        total = np.bincount(inverse, weights=scores)
        mine = total[np.searchsorted(uniq, target)]
        # rank_codes' order: higher score first, ties to the lower code
        ranks[p] = 1 + int(((total > mine) | ((total == mine) & (uniq < target))).sum())
    return ranks
