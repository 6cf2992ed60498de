"""Every metric against a case computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.metrics import (
    average_recommendation_popularity,
    catalog_coverage,
    cooccurrence_vectors,
    intra_list_diversity,
    item_feature_vectors,
    novelty,
    popularity_percentile,
    ranking_metrics,
)

# user A: list a b c d, relevant {a, c, x}  -> hits at ranks 1 and 3 (x is never recommended)
# user B: list e f g h, relevant {h}        -> hit at rank 4
# user C: list a b c d, relevant {z}        -> no hit
# user D: relevant {a} but the model returned nothing -> not scored
# user E: recommended but has no test items        -> not scored
RECS = {"A": ["a", "b", "c", "d"], "B": ["e", "f", "g", "h"], "C": ["a", "b", "c", "d"], "D": [], "E": ["a"]}
TRUTH = {"A": {"a", "c", "x"}, "B": {"h"}, "C": {"z"}, "D": {"a"}}


def test_accuracy_metrics_by_hand_at_4():
    m = ranking_metrics(RECS, TRUTH, k=4)
    assert m["n_users"] == 3
    # precision: (2/4 + 1/4 + 0) / 3 = 0.25
    assert m["precision@4"] == pytest.approx(0.25)
    # recall: (2/3 + 1/1 + 0) / 3 = 5/9
    assert m["recall@4"] == pytest.approx(5 / 9)
    # nDCG: A dcg = 1/log2(2) + 1/log2(4) = 1.5, idcg over min(4,3)=3 = 1 + 1/log2(3) + 1/2
    #       B dcg = 1/log2(5), idcg = 1 ; C 0
    ndcg_a = 1.5 / (1 + 1 / log2(3) + 0.5)
    ndcg_b = 1 / log2(5)
    assert m["ndcg@4"] == pytest.approx((ndcg_a + ndcg_b) / 3)
    # MAP (Recommenders' map): A (1/1 + 2/3) / 3 = 5/9 ; B (1/4) / 1 ; C 0 -> (5/9 + 1/4) / 3
    assert m["map"] == pytest.approx((5 / 9 + 1 / 4) / 3)
    # hit rate: A and B hit -> 2/3 ; MRR: (1/1 + 1/4 + 0) / 3
    assert m["hit_rate@4"] == pytest.approx(2 / 3)
    assert m["mrr@4"] == pytest.approx(1.25 / 3)


def test_cutoff_k_and_short_lists():
    m = ranking_metrics(RECS, TRUTH, k=2)
    # only the first 2 items count: A hits a (rank 1); B, C no hits
    assert m["precision@2"] == pytest.approx((1 / 2) / 3)
    assert m["recall@2"] == pytest.approx((1 / 3) / 3)
    # A: dcg 1, idcg over min(2,3)=2 positions: 1 + 1/log2(3)
    assert m["ndcg@2"] == pytest.approx((1 / (1 + 1 / log2(3))) / 3)
    assert m["map"] == pytest.approx((1 / 3) / 3)
    # a list shorter than k still divides precision by k: 1 hit in a 1-item list at k=10 -> 0.1
    short = ranking_metrics({"u": ["a"]}, {"u": {"a"}}, k=10)
    assert short["precision@10"] == pytest.approx(0.1)
    assert short["ndcg@10"] == pytest.approx(1.0) and short["map"] == pytest.approx(1.0)


def test_no_scorable_user_and_bad_input():
    assert ranking_metrics({"u": []}, {"u": {"a"}}, k=3)["precision@3"] == 0.0
    with pytest.raises(ValueError, match="twice"):
        ranking_metrics({"u": ["a", "a"]}, {"u": {"a"}}, k=3)
    with pytest.raises(ValueError, match="k must"):
        ranking_metrics(RECS, TRUTH, k=0)


def test_coverage_by_hand():
    # top 2 of every list: a b | e f | a b | - | a -> {a, b, e, f} = 4 of a 10-item catalog
    assert catalog_coverage(RECS, catalog_size=10, k=2) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        catalog_coverage(RECS, catalog_size=0)


def test_novelty_by_hand():
    counts = {"a": 8, "b": 4, "c": 2}  # of 8 training users
    recs = {"u": ["a", "b"], "v": ["c", "d"]}
    # -log2: a 8/8 -> 0 ; b 4/8 -> 1 ; c 2/8 -> 2 ; d unseen -> treated as 1/8 -> 3 ; mean of 4 pairs = 1.5
    assert novelty(recs, counts, n_users=8, k=2) == pytest.approx(1.5)
    # top 1: a -> 0, c -> 2 ; mean 1
    assert novelty(recs, counts, n_users=8, k=1) == pytest.approx(1.0)


def test_intra_list_diversity_with_features_by_hand():
    # genre vectors: a = [1,0], b = [1,1], c = [0,1]
    vectors = np.array([[1, 0], [1, 1], [0, 1]])
    index = {"a": 0, "b": 1, "c": 2}
    # list a,b,c: cos(a,b)=1/sqrt2, cos(a,c)=0, cos(b,c)=1/sqrt2 -> mean distance 1 - (sqrt2)/3
    # list a,c: distance 1 ; single-item list skipped
    expected = ((1 - np.sqrt(2) / 3) + 1.0) / 2
    recs = {"u": ["a", "b", "c"], "v": ["a", "c"], "w": ["b"]}
    assert intra_list_diversity(recs, vectors, index, k=3) == pytest.approx(expected)
    with pytest.raises(KeyError, match="zz"):
        intra_list_diversity({"u": ["a", "zz"]}, vectors, index)


def test_cooccurrence_similarity_by_hand():
    # users x items: u0 {a,b}, u1 {a,b}, u2 {a}, u3 {c}
    matrix = sp.csr_matrix(np.array([[1, 2, 0], [1, 1, 0], [3, 0, 0], [0, 0, 1]], dtype=np.float32))
    vectors = cooccurrence_vectors(matrix)
    # a seen by 3 users, b by 2, together 2 -> cos = 2 / sqrt(3*2) ; a,c never together -> 0
    index = {"a": 0, "b": 1, "c": 2}
    assert intra_list_diversity({"u": ["a", "b"]}, vectors, index) == pytest.approx(1 - 2 / np.sqrt(6))
    assert intra_list_diversity({"u": ["a", "c"]}, vectors, index) == pytest.approx(1.0)


def test_popularity_bias_by_hand():
    counts = {"a": 1, "b": 2, "c": 3, "d": 4}
    recs = {"u": ["d", "c"], "v": ["a", "b"]}
    # ARP: u (4+3)/2 = 3.5, v (1+2)/2 = 1.5 -> 2.5
    assert average_recommendation_popularity(recs, counts, k=2) == pytest.approx(2.5)
    # percentiles rank/4: a .25 b .5 c .75 d 1 -> u .875, v .375 -> .625
    assert popularity_percentile(recs, counts, k=2) == pytest.approx(0.625)
    # ties share the average rank: {a:1, b:1} -> 1.5/2 = .75 each
    assert popularity_percentile({"u": ["a"]}, {"a": 1, "b": 1}) == pytest.approx(0.75)


@settings(max_examples=60, deadline=None)
@given(
    lists=st.dictionaries(
        st.sampled_from("uvwxyz"),
        st.lists(st.sampled_from("abcdefghij"), min_size=0, max_size=8, unique=True),
        min_size=1,
    ),
    truths=st.dictionaries(
        st.sampled_from("uvwxyz"), st.sets(st.sampled_from("abcdefghijk"), min_size=1, max_size=6), min_size=1
    ),
    k=st.integers(1, 8),
)
def test_metric_bounds_and_perfect_lists(lists, truths, k):
    m = ranking_metrics(lists, truths, k)
    for name in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}", "map", f"hit_rate@{k}", f"mrr@{k}"):
        assert 0.0 <= m[name] <= 1.0 + 1e-12
    assert m["map"] <= m[f"recall@{k}"] + 1e-12  # each hit adds at most 1 / n_relevant
    assert m[f"mrr@{k}"] <= m[f"hit_rate@{k}"] + 1e-12
    # relevant items first: nDCG is 1 and recall is min(k, n) / n for every user
    perfect = {user: sorted(items) for user, items in truths.items()}
    best = ranking_metrics(perfect, truths, k)
    assert best[f"ndcg@{k}"] == pytest.approx(1.0)
    expected_recall = np.mean([min(k, len(items)) / len(items) for items in truths.values()])
    assert best[f"recall@{k}"] == pytest.approx(expected_recall)
    assert best["map"] == pytest.approx(expected_recall)


def test_item_feature_vectors_pick_descriptive_columns():
    import pandas as pd

    items = pd.DataFrame(
        {
            "Comedy": [1, 0, 1],  # a flag: used as is
            "brand": ["x", "x", None],  # repeated labels: one-hot (missing -> no 1)
            "title": ["A", "B", "C"],  # unique text: ignored
            "price": [9.5, 3.0, 9.5],  # a number: ignored
            "bonded": [True, False, True],  # a boolean flag: used as is
        },
        index=[10, 11, 12],
    )
    vectors, index = item_feature_vectors(items)
    assert index == {"10": 0, "11": 1, "12": 2}
    np.testing.assert_array_equal(vectors.toarray(), [[1, 1, 1], [0, 1, 0], [1, 0, 1]])
    # lists: (10, 11): cos = 1 / (sqrt3 * 1) ; (10, 12): cos = 2 / (sqrt3 * sqrt2)
    d = intra_list_diversity({"u": ["10", "11"], "v": ["10", "12"]}, vectors, index, k=2)
    assert d == pytest.approx(((1 - 1 / np.sqrt(3)) + (1 - 2 / np.sqrt(6))) / 2)
