"""Every registered recommender honours the `Recommender` contract."""

from __future__ import annotations

import numpy as np
import pytest

from models.recommenders import REGISTRY, load_recommender, make_recommender
from models.recommenders.base import Recommender

FAST = {  # small settings so the whole matrix of checks stays quick
    "als": {"factors": 8, "iterations": 5, "regularization": 1.0},
    "bpr": {"factors": 8, "iterations": 10},
    "ranker": {"n_estimators": 20, "n_candidates": 15, "min_child_samples": 5},
    "coldstart": {"model": "ease"},
    "popularity": {"by": "region"},
    "trending": {"by": "category_id"},
}
NAMES = sorted(REGISTRY)
# personal-topfreq ranks only the shopper's own past items: with them excluded its list is empty
UNSEEN_RANKERS = [n for n in NAMES if n != "personal-topfreq"]


def build(name):
    return make_recommender(name, **FAST.get(name, {}))


@pytest.fixture(scope="module")
def fitted(market):
    return {name: build(name).fit(market) for name in NAMES}


def test_required_names_are_registered():
    required = {"popularity", "trending", "itemknn", "als", "bpr", "ease", "ranker", "content"}
    assert required <= set(REGISTRY)


def test_unknown_name_and_unfitted_use_raise(market):
    with pytest.raises(ValueError, match="unknown recommender"):
        make_recommender("svd")
    with pytest.raises(Exception, match="not fitted"):
        make_recommender("ease").recommend(["u000"])


def test_an_unknown_or_mistyped_parameter_raises_naming_the_choices():
    """As make_recommender says: `--param zzz=5` raised Python's bare `__init__() got an unexpected
    keyword argument`, and `--param k=abc` failed inside fit with `'<' not supported between ...`."""
    with pytest.raises(
        ValueError, match=r"recommender 'itemknn' has no parameter \['zzz'\]; choose from .*'k'"
    ):
        make_recommender("itemknn", zzz=5)
    with pytest.raises(ValueError, match="recommender 'itemknn' parameter k takes a number, not 'abc'"):
        make_recommender("itemknn", k="abc")
    assert make_recommender("itemknn", k=5, weighting="cosine").k == 5


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_learned_state_is_suffixed(name, market):
    model = build(name)
    params_before = dict(model.get_params())
    assert not [k for k in vars(model) if k.endswith("_")]
    assert model.fit(market) is model
    assert isinstance(model, Recommender)
    assert [k for k in vars(model) if k.endswith("_")]
    assert model.get_params() == params_before


@pytest.mark.parametrize("name", UNSEEN_RANKERS)
def test_recommend_ranks_unseen_items(name, fitted, market):
    model = fitted[name]
    users = ["u000", "u001", "u013"]
    out = model.recommend(users, n=5)
    assert len(out) == len(users)
    for user, ranked in zip(users, out, strict=True):
        assert 0 < len(ranked) <= 5
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True)
        items = [i for i, _ in ranked]
        assert len(set(items)) == len(items)
        seen = set(market.item_ids[market.matrix[market.user_index[user]].indices])
        assert not seen & set(items)


@pytest.mark.parametrize("name", NAMES)
def test_exclude_seen_false_can_return_seen_items(name, fitted, market):
    model = fitted[name]
    user = "u000"
    seen = set(market.item_ids[market.matrix[market.user_index[user]].indices])
    out = model.recommend([user], n=len(market.item_ids), exclude_seen=False)[0]
    assert seen & {i for i, _ in out}


@pytest.mark.parametrize("name", UNSEEN_RANKERS)
def test_candidates_restrict_results(name, fitted):
    model = fitted[name]
    allowed = {"p001", "p002", "p003", "p010", "p017", "p022", "p039", "not-an-item"}
    for ranked in model.recommend(["u000", "u005"], n=10, candidates=allowed):
        assert ranked and {i for i, _ in ranked} <= allowed
    assert model.recommend(["u000"], n=10, candidates=["not-an-item"]) == [[]]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "coldstart"])
def test_unknown_user_gets_empty_list(name, fitted):
    out = fitted[name].recommend(["nobody", "u000"], n=3, exclude_seen=name in UNSEEN_RANKERS)
    assert out[0] == [] and len(out[1]) == 3


@pytest.mark.parametrize("name", NAMES)
def test_similar_items(name, fitted):
    model = fitted[name]
    similar = model.similar_items("p000", n=4)
    assert 0 < len(similar) <= 4
    assert "p000" not in {i for i, _ in similar}
    assert model.similar_items("no-such-item") == []
    with pytest.raises(ValueError, match="positive integer"):
        model.similar_items("p000", n=0)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, fitted, tmp_path):
    model = fitted[name]
    path = tmp_path / f"{name}.joblib"
    model.save(path)
    users = ["u000", "u007", "u031", "nobody"]
    expected = model.recommend(users, n=6)
    for loaded in (load_recommender(path), type(model).load(path)):
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        assert loaded.recommend(users, n=6) == expected
        assert loaded.similar_items("p003", n=3) == model.similar_items("p003", n=3)


def test_load_rejects_other_files(tmp_path, fitted):
    bogus = tmp_path / "x.joblib"
    import joblib

    joblib.dump({"hello": 1}, bogus)
    with pytest.raises(ValueError, match="not a CrossCart recommender"):
        load_recommender(bogus)
    fitted["ease"].save(tmp_path / "ease.joblib")
    with pytest.raises(ValueError, match="holds a EASERecommender"):
        type(fitted["als"]).load(tmp_path / "ease.joblib")
    with pytest.raises(FileNotFoundError):
        load_recommender(tmp_path / "missing.joblib")


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_with_random_state(name, fitted, market):
    again = build(name).fit(market)
    users = ["u000", "u003", "u042"]
    assert again.recommend(users, n=8) == fitted[name].recommend(users, n=8)


@pytest.mark.parametrize("name", NAMES)
def test_bad_n_is_rejected(name, fitted):
    with pytest.raises(ValueError, match="positive integer"):
        fitted[name].recommend(["u000"], n=0)
    with pytest.raises(TypeError):
        fitted[name].recommend("u000")


def test_fit_rejects_non_interaction_data():
    with pytest.raises(TypeError, match="InteractionData"):
        make_recommender("ease").fit(np.ones((3, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_knows_user_names_the_users_fitted_as_spelt(name, fitted, market):
    """Serving reads a look-alike shopper id (`ｕ000`, `u000 `) as the shopper the model learned it as,
    else as its normal form: every model answers for the ids it was fitted on, exactly."""
    model = fitted[name]
    assert all(model.knows_user(u) for u in market.user_ids[:5])
    assert not any(model.knows_user(u) for u in ("\uff55000", "u000 ", "nobody"))
