"""Content-based neighbours from product attributes: the cold-start answer for new products.

Each item is a TF-IDF-weighted, L2-normalised bag of "column=value" tokens (category, brand, origin,
merchant by default) plus one token per 0/1 flag that is set (genres, `self_operated`). Items that
exist only in `item_features` (listed, never interacted with) are part of the catalogue, so a
brand-new product gets neighbours and can be recommended. A shopper's score is the cosine between
their profile (the sum of their items' vectors) and each item, with a small popularity term that
breaks ties between items with identical attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.preprocessing import normalize

from features.interactions import InteractionData
from models.recommenders.common import MatrixRecommender

DEFAULT_COLUMNS = ("category_id", "brand", "origin_country", "merchant_id")
_POPULARITY_WEIGHT = 1e-3


def _is_flag(column: pd.Series) -> bool:
    """A 0/1 attribute (e.g. a MovieLens genre, `self_operated`)."""
    is_int = pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column)
    return is_int and set(pd.unique(column.dropna())) <= {0, 1}


class ContentRecommender(MatrixRecommender):
    """Attribute-similarity model over `data.item_features[columns]` (columns absent are skipped) and,
    with `flag_columns`, every 0/1 column."""

    name = "content"

    def __init__(self, columns: Sequence[str] = DEFAULT_COLUMNS, flag_columns: bool = True):
        self.columns = columns
        self.flag_columns = flag_columns

    def _fit(self, data: InteractionData, matrix: sp.csr_matrix) -> None:
        feats = data.item_features
        used = [c for c in self.columns if feats is not None and c in feats.columns]
        flags = (
            [c for c in feats.columns if _is_flag(feats[c])]
            if feats is not None and self.flag_columns
            else []
        )
        if not used and not flags:
            raise ValueError(
                f"content needs item_features with one of {list(self.columns)} or 0/1 attribute columns"
            )
        # extend the catalogue with items known only from their attributes (listed, never bought)
        extra = np.array([t for t in feats.index.astype(str) if t not in self.item_index_], dtype=object)
        if len(extra):
            self.item_ids_ = np.concatenate([self.item_ids_.astype(object), extra])
            self.item_index_ = {t: j for j, t in enumerate(self.item_ids_.tolist())}
            self.user_items_ = sp.csr_matrix(
                (matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], len(self.item_ids_))
            )
        table = feats.reindex(pd.Index(self.item_ids_))
        tokens = [
            table[c].astype(object).map(lambda v, c=c: None if pd.isna(v) else f"{c}={v}") for c in used
        ]
        tokens += [table[c].map(lambda v, c=c: c if v == 1 else None) for c in flags]
        long = pd.concat([t.reset_index(drop=True) for t in tokens]).dropna()
        codes, vocab = pd.factorize(long)
        onehot = sp.csr_matrix(
            (np.ones(len(codes)), (long.index.to_numpy(), codes)), shape=(len(self.item_ids_), len(vocab))
        )
        self.vocabulary_ = np.asarray(vocab, dtype=object)
        self.item_vectors_ = sp.csr_matrix(TfidfTransformer(norm="l2").fit_transform(onehot))
        counts = np.asarray((self.user_items_ > 0).sum(axis=0)).ravel()
        self.item_pop_ = counts / max(counts.max(), 1)

    def _score_users(self, rows: np.ndarray) -> np.ndarray:
        profiles = normalize(self.user_items_[rows] @ self.item_vectors_)
        return (profiles @ self.item_vectors_.T).toarray() + _POPULARITY_WEIGHT * self.item_pop_

    def _item_scores(self, col: int) -> np.ndarray:
        return (self.item_vectors_ @ self.item_vectors_[col].T).toarray().ravel()
