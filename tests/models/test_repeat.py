"""Repeat-aware baselines against hand-computed values: baskets, personal top-frequency, TIFU-KNN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.interactions import InteractionData, build_interactions
from models.recommenders import load_recommender, make_recommender
from models.recommenders.baskets import basket_table
from models.recommenders.repeat import tifu_user_vectors

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _data(rows: list[tuple], basket: bool = True) -> InteractionData:
    """(user, item, day[, basket]) rows as interactions, with basket ids on the events."""
    cols = ["user_id", "item_id", "day", "basket_id"] if basket else ["user_id", "item_id", "day"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["ts"] = T0 + pd.to_timedelta(frame.pop("day"), unit="D")
    data = build_interactions(frame.drop(columns=["basket_id"], errors="ignore"))
    if basket:
        import dataclasses

        data = dataclasses.replace(data, events=data.events.assign(basket_id=frame["basket_id"].to_numpy()))
    return data


# u1 buys {a, b}, then {a}, then {c}; u2 buys {a, c} twice; u3 buys {b} then {d}
ROWS = [
    ("u1", "a", 0, "o1"), ("u1", "b", 0, "o1"), ("u1", "a", 0, "o1"),  # duplicate row: counts once
    ("u1", "a", 5, "o2"), ("u1", "c", 9, "o3"),
    ("u2", "a", 1, "o4"), ("u2", "c", 1, "o4"), ("u2", "a", 4, "o5"), ("u2", "c", 4, "o5"),
    ("u3", "b", 2, "o6"), ("u3", "d", 6, "o7"),
]  # fmt: skip


def test_basket_table_orders_baskets_and_dedupes_items():
    data = _data(ROWS)
    table = basket_table(data)
    u1 = table[table["u"] == data.user_index["u1"]]
    items = data.item_ids[u1["i"].to_numpy()].tolist()
    assert items == ["a", "b", "a", "c"] and u1["b"].tolist() == [0, 0, 1, 2]
    assert set(u1["n_baskets"]) == {3}


def test_without_basket_ids_a_basket_is_one_day_and_returns_are_not_purchases():
    frame = pd.DataFrame(
        {"user_id": ["u", "u", "u", "u"], "item_id": ["a", "b", "a", "c"], "value": [1, 1, 1, -1]}
    )
    frame["ts"] = T0 + pd.to_timedelta([0.1, 0.5, 3.0, 3.2], unit="D")
    data = build_interactions(frame)
    table = basket_table(data)
    assert data.item_ids[table["i"]].tolist() == ["a", "b", "a"]  # the return of c is no purchase
    assert table["b"].tolist() == [0, 0, 1]


def test_personal_topfreq_decays_by_basket():
    model = make_recommender("personal-topfreq", basket_decay=0.5).fit(_data(ROWS))
    ranked = model.recommend(["u1"], n=5, exclude_seen=False)[0]
    # c: 1 (last basket); a: 0.25 + 0.5; b: 0.25; d was never bought by u1: left out
    assert [(i, round(s, 6)) for i, s in ranked] == [("c", 1.0), ("a", 0.75), ("b", 0.25)]
    assert model.recommend(["u1"], n=5)[0] == []  # only past items: nothing once they are excluded


def test_gp_topfreq_fills_with_global_basket_frequency():
    model = make_recommender("gp-topfreq", basket_decay=0.5).fit(_data(ROWS))
    ranked = [i for i, _ in model.recommend(["u3"], n=4, exclude_seen=False)[0]]
    # own: d (last), b; then the most frequent in baskets: a (4 baskets), c (3)
    assert ranked == ["d", "b", "a", "c"]
    assert [i for i, _ in model.recommend(["u3"], n=2)[0]] == ["a", "c"]


def test_tifu_user_vector_by_hand():
    table = basket_table(_data(ROWS))
    vectors = tifu_user_vectors(table, (3, 4), n_groups=2, within_decay=0.5, group_decay=0.5)
    # u1: 3 baskets in 2 groups: {o1, o2} then {o3}. o1: 0.5^1 / 2 * 0.5^1 / 2 = 0.0625,
    # o2: 1 / 2 * 0.5 / 2 = 0.125, o3: 1 / 1 * 1 / 2 = 0.5
    np.testing.assert_allclose(vectors[0].toarray().ravel(), [0.1875, 0.0625, 0.5, 0.0])
    # u3: 2 baskets, 2 groups of one basket each: {b} 1 / 1 * 0.5 / 2 = 0.25, {d} 1 / 2
    np.testing.assert_allclose(vectors[2].toarray().ravel(), [0.0, 0.25, 0.0, 0.5])


def test_tifu_blends_own_vector_with_nearest_neighbours():
    data = _data(ROWS)
    model = make_recommender("tifuknn", k=1, n_groups=2, within_decay=0.5, group_decay=0.5, alpha=0.5)
    model.fit(data)
    vectors = model.user_vectors_.toarray()
    distances = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    assert model.neighbors_.ravel().tolist() == nearest.tolist()
    expected = 0.5 * vectors[0] + 0.5 * vectors[nearest[0]]
    scores = dict(model.recommend(["u1"], n=4, exclude_seen=False)[0])
    got = np.array([scores.get(i, 0.0) for i in data.item_ids])
    with_evidence = expected > 0
    np.testing.assert_allclose(got[with_evidence], 1.0 + expected[with_evidence])  # fill shifts them
    assert (got[~with_evidence] < 1.0).all()


def test_tifu_round_trips_and_rejects_bad_settings(tmp_path):
    data = _data(ROWS)
    model = make_recommender("tifuknn", k=2).fit(data)
    model.save(tmp_path / "m.joblib")
    again = load_recommender(tmp_path / "m.joblib")
    assert again.recommend(["u2"], n=3, exclude_seen=False) == model.recommend(
        ["u2"], n=3, exclude_seen=False
    )
    with pytest.raises(ValueError, match="alpha"):
        make_recommender("tifuknn", alpha=1.5).fit(data)
    with pytest.raises(ValueError, match="basket_decay"):
        make_recommender("personal-topfreq", basket_decay=0).fit(data)


def test_repurchase_features_by_hand():
    from models.recommenders.repurchase import repurchase_context, repurchase_features

    rows = [("u", "s", 0, "o1"), ("u", "s", 7, "o2"), ("u", "x", 7, "o2"), ("u", "s", 14, "o3"),
            ("v", "s", 2, "o4"), ("v", "s", 12, "o5"), ("v", "y", 20, "o6")]  # fmt: skip
    data = _data(rows)
    ctx = repurchase_context(data, data.matrix.shape)
    u, i = data.user_index, data.item_index
    f = repurchase_features(ctx, np.array([u["u"], u["u"], u["v"]]), np.array([i["s"], i["y"], i["s"]]))
    # u bought s on days 0, 7, 14 (every 7 days, CV 0); the data ends on day 20: 6 days since, 6/7 due
    assert f["rp_count"].tolist() == [3.0, 0.0, 2.0]
    np.testing.assert_allclose(f["rp_gap_mean"], [7.0, np.nan, 10.0])
    np.testing.assert_allclose(f["rp_gap_cv"][0], 0.0)
    np.testing.assert_allclose(f["rp_days_since"], [6.0, np.nan, 8.0])
    np.testing.assert_allclose(f["rp_due"], [6 / 7, np.nan, 0.8])
    np.testing.assert_allclose(f["rp_baskets_since"], [0.0, np.nan, 1.0])
    assert f["rp_item_return_rate"][0] == 1.0  # both buyers of s came back
    np.testing.assert_allclose(f["rp_due_item"][1], np.nan)  # nobody rebought y: no item cycle
    np.testing.assert_allclose(f["rp_user_repeat_share"][0], 2 / 4)  # u: 4 purchases, 2 of them repeats


def _staple_market(seed: int = 0) -> InteractionData:
    """Every shopper rebuys one staple each week and tries a few one-off items; some one-offs are
    popular, so a model blind to cycles would rank them above the staple."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(120):
        staple, start = f"s{u % 6}", int(rng.integers(0, 7))
        for week, day in enumerate(range(start, 84, 7)):
            rows.append((f"u{u:03d}", staple, day, f"{u}-w{week}"))
        for n in range(4):
            item = f"x{int(rng.zipf(1.5)) % 40}"
            rows.append((f"u{u:03d}", item, int(rng.integers(0, 84)), f"{u}-x{n}"))
    return _data(rows)


def test_ranker_learns_to_rebuy_the_due_staple():
    data = _staple_market()
    ranker = make_recommender("ranker", n_estimators=40, n_candidates=10, min_child_samples=5).fit(data)
    assert ranker.repeats_ and "rp_due" in ranker.feature_names_
    users = [f"u{u:03d}" for u in range(0, 120, 3)]
    lists = ranker.recommend(users, n=3, exclude_seen=False)
    staple_first = np.mean(
        [ranked[0][0] == f"s{int(u[1:]) % 6}" for u, ranked in zip(users, lists, strict=True)]
    )
    assert staple_first >= 0.9
    # excluding past items still works: the same model then ranks only new items
    for user, ranked in zip(users, ranker.recommend(users, n=3), strict=True):
        seen = set(data.item_ids[data.matrix[data.user_index[user]].indices])
        assert ranked and not seen & {i for i, _ in ranked}


def test_ranker_without_repeats_keeps_random_holdout(market):
    ranker = make_recommender("ranker", n_estimators=10, n_candidates=10, min_child_samples=5).fit(market)
    assert not ranker.repeats_
    with pytest.raises(ValueError, match="holdout_by"):
        make_recommender("ranker", holdout_by="weekly").fit(market)
