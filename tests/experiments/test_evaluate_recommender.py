"""The evaluation library and `crosscart evaluate recommender`, with a tiny popularity model."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.interactions import InteractionData
from features.loaders import LoadReport
from models.recommenders.base import Ranked, Recommender
from training.evaluate_recommender import (
    Dataset,
    evaluate_model,
    evaluate_models,
    load_dataset,
    prepare,
)


class TinyPopularity(Recommender):
    """Most-interacted items first; nothing for users unseen at fit time (the interface's rule)."""

    name = "tiny"

    def fit(self, data: InteractionData):
        self.data_ = data
        self.order_ = np.argsort(-np.diff(data.matrix.tocsc().indptr), kind="stable")
        return self

    def recommend(
        self, user_ids: Sequence[str], n: int = 10, exclude_seen: bool = True,
        candidates: Collection[str] | None = None,
    ) -> list[Ranked]:  # fmt: skip
        out = []
        for user in user_ids:
            row = self.data_.user_index.get(user)
            if row is None:
                out.append([])
                continue
            seen = set(self.data_.matrix[row].indices) if exclude_seen else set()
            items = [j for j in self.order_ if j not in seen][:n]
            out.append([(self.data_.item_ids[j], float(len(items) - r)) for r, j in enumerate(items)])
        return out

    def similar_items(self, item_id: str, n: int = 10) -> Ranked:
        return []

    def save(self, path) -> None:
        raise OSError("not needed in tests")

    @classmethod
    def load(cls, path):
        raise OSError("not needed in tests")


def _dataset() -> Dataset:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [
        # train (days 0-5): popularity a (3 users) > b (2) > c (1)
        ("u1", "a", 0), ("u2", "a", 1), ("u3", "a", 2), ("u1", "b", 3), ("u2", "b", 4), ("u3", "c", 5),
        # test (days 6-9)
        ("u1", "c", 6),  # u1's list: c (a, b seen) -> hit at rank 1
        ("u2", "d", 7),  # u2's list: c -> miss (d unseen in train)
        ("u3", "a", 8),  # u3 already had a: a repeat, not relevant -> u3 has nothing to find
        ("u9", "a", 9),  # cold user: the model returns nothing -> not scored
    ]  # fmt: skip
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "day"])
    events["ts"] = t0 + pd.to_timedelta(events.pop("day"), unit="D")
    return Dataset(events=events, report=LoadReport(source="test", rows_read=len(events)))


def test_protocol_cold_users_and_repeats():
    setup = prepare(_dataset(), "temporal:0.6")
    assert setup.train.n_users == 3 and setup.train.matrix.nnz == 6
    assert setup.relevant == {"u1": {"c"}, "u2": {"d"}, "u9": {"a"}}
    assert setup.n_cold_users == 1 and setup.n_test_pairs_seen == 1
    row = evaluate_model(TinyPopularity(), setup, k=2)
    # scored users: u1 (hit at rank 1 of list [c]) and u2 (list [c, d?]: d is not in train -> [c], miss)
    assert row["n_users"] == 2 and row["n_test_users"] == 3 and row["n_cold_users"] == 1
    assert row["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert row["recall@2"] == pytest.approx((1 + 0) / 2)
    assert row["map"] == pytest.approx(0.5) and row["mrr@2"] == pytest.approx(0.5)
    # both lists are [c]: 1 of the 3 train items is ever shown
    assert row["coverage"] == pytest.approx(1 / 3)
    # c was touched by 1 of 3 training users: -log2(1/3)
    assert row["novelty"] == pytest.approx(np.log2(3))
    assert row["model"] == "tiny" and row["fit_seconds"] >= 0 and row["predict_seconds"] >= 0


def test_empty_split_is_a_clear_error():
    data = _dataset()
    one_user = Dataset(events=data.events[data.events["user_id"] == "u9"], report=data.report)
    with pytest.raises(ValueError, match="empty"):
        prepare(one_user, "leave-last:1")


def test_registry_names_are_checked_before_fitting(monkeypatch):
    import models.recommenders as registry

    made = []

    def fake_make(name, **params):
        if name != "tiny":
            raise ValueError(f"unknown recommender {name!r}")
        made.append(params)
        return TinyPopularity()

    monkeypatch.setattr(registry, "make_recommender", fake_make)
    setup = prepare(_dataset(), "temporal:0.6")
    with pytest.raises(ValueError, match="cannot make model 'nope'"):
        list(evaluate_models(["tiny", "nope"], setup, k=2))
    rows = list(evaluate_models(["tiny"], setup, k=3, params={"tiny": {"alpha": 1}}))
    assert [r["model"] for r in rows] == ["tiny"] and "ndcg@3" in rows[0]
    assert made[-1] == {"alpha": 1}


def test_data_specs(tmp_path):
    with pytest.raises(ValueError, match="bad data spec"):
        load_dataset("parquet:/x")
    with pytest.raises(ValueError, match="--user-col"):
        load_dataset(f"events:{tmp_path / 'e.csv'}")
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\t10\t3\t200\n")
    flags = "|".join(["0"] * 19)
    (tmp_path / "u.item").write_bytes(f"10|Film (1990)|01-Jan-1990||http://x|{flags}\n".encode("latin-1"))
    data = load_dataset(f"movielens:{tmp_path / 'u.data'}")
    assert len(data.events) == 2 and data.item_features.index.tolist() == ["10"]


def _cli_events(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame(
        {
            "Buyer": [f"b{i}" for i in rng.integers(0, 40, n)],
            "Sku": [f"s{int(i)}" for i in rng.zipf(1.6, n) % 30],
            "When": rng.permutation(n) * 3600 + 1_700_000_000,
        }
    )
    path = tmp_path / "events.csv"
    text = frame.to_csv(index=False) + ",s1,1700000000\nb1,s2,not-a-time\n"
    path.write_text(text)
    return path


def test_cli_json_lines_and_stderr_report(tmp_path, monkeypatch):
    import models.recommenders as registry
    from crosscart.cli import app

    monkeypatch.setattr(registry, "make_recommender", lambda name, **p: TinyPopularity())
    path = _cli_events(tmp_path)
    args = [
        "evaluate", "recommender", "--data", f"events:{path}", "--user-col", "Buyer", "--item-col", "Sku",
        "--time-col", "When", "--split", "temporal:0.8", "--k", "5", "--models", "tiny,tiny2", "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["model"] for r in rows] == ["tiny", "tiny2"]
    for key in ["map", "ndcg@5", "precision@5", "recall@5", "coverage", "novelty", "fit_seconds",
                "hit_rate@5", "mrr@5", "n_users", "predict_seconds"]:  # fmt: skip
        assert key in rows[0]
    assert 0 < rows[0]["precision@5"] <= 1
    assert "1 missing id" in result.stderr and "1 bad timestamp" in result.stderr

    table = CliRunner().invoke(app, args[:-1])
    assert table.exit_code == 0 and "precision@5" in table.stdout and "tiny2" in table.stdout


def test_cli_unknown_model_and_bad_split(tmp_path):
    from crosscart.cli import app

    path = _cli_events(tmp_path)
    base = ["evaluate", "recommender", "--data", f"events:{path}", "--user-col", "Buyer", "--item-col", "Sku",
            "--time-col", "When"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--models", "no-such-model"])
    assert result.exit_code == 2 and "no-such-model" in result.stderr
    result = CliRunner().invoke(app, [*base, "--split", "weekly"])
    assert result.exit_code == 2 and "bad split spec" in result.stderr


class ShowsNewItem(TinyPopularity):
    """Puts a catalog item nobody has touched first, as a content-based model might."""

    def recommend(self, user_ids, n=10, exclude_seen=True, candidates=None):
        return [[("new", 9.0), *items][:n] if items else [] for items in super().recommend(user_ids, n)]


def test_items_unseen_in_training_are_scored_without_errors():
    data = _dataset()
    products = pd.DataFrame({"brand": list("abcdn")}, index=["a", "b", "c", "d", "new"])
    setup = prepare(Dataset(data.events, data.report, item_features=products), "temporal:0.6")
    row = evaluate_model(ShowsNewItem(), setup, k=2)
    # lists: [new, c] for u1 and u2; catalog = a, b, c (train) + d, new (features) = 5 items
    assert row["coverage"] == pytest.approx(2 / 5)
    # "new" has no co-occurrence vector: unlike c -> distance 1
    assert row["diversity"] == pytest.approx(1.0)
    assert row["diversity_basis"] == "co-occurrence"  # every brand is unique: no feature says "alike"
    # u1 hits c at rank 2: precision (1/2 + 0) / 2, mrr (1/2) / 2
    assert row["precision@2"] == pytest.approx(0.25) and row["mrr@2"] == pytest.approx(0.25)

    # with shared attributes, diversity is measured on them: c and new share brand x, differ in origin
    products = pd.DataFrame(
        {"brand": list("yyxyx"), "origin": list("JJJKK"), "price": [1.5, 2.0, 3.0, 4.0, 5.0]},
        index=["a", "b", "c", "d", "new"],
    )
    setup = prepare(Dataset(data.events, data.report, item_features=products), "temporal:0.6")
    row = evaluate_model(ShowsNewItem(), setup, k=2)
    # one-hot brand + origin (price ignored): c = (x, J), new = (x, K) -> cos = 1/2 -> distance 1/2
    assert row["diversity_basis"] == "item features" and row["diversity"] == pytest.approx(0.5)


def test_cli_synthetic_marketplace_directory(tmp_path, monkeypatch):
    import models.recommenders as registry
    from crosscart.cli import app

    monkeypatch.setattr(registry, "make_recommender", lambda name, **p: TinyPopularity())
    rng = np.random.default_rng(2)
    n = 300
    kinds = rng.choice(["view", "cart", "favorite", "purchase", "search"], n)
    (tmp_path / "events").mkdir()
    pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.permutation(n), unit="min"),
            "shopper_id": [f"s{i}" for i in rng.integers(0, 25, n)],
            "product_id": np.where(kinds == "search", None, [f"p{i}" for i in rng.integers(0, 15, n)]),
            "event_type": kinds,
            "quantity": np.where(kinds == "purchase", 1, 0).astype("int32"),
            "value": np.where(kinds == "purchase", 9.9, 0.0),
        }
    ).to_parquet(tmp_path / "events" / "part-0.parquet")
    pd.DataFrame({"product_id": [f"p{i}" for i in range(15)], "brand": ["b"] * 15}).to_parquet(
        tmp_path / "products.parquet"
    )
    pd.DataFrame({"shopper_id": [f"s{i}" for i in range(25)], "region": ["east"] * 25}).to_parquet(
        tmp_path / "shoppers.parquet"
    )
    args = ["evaluate", "recommender", "--data", f"synthetic:{tmp_path}", "--split", "leave-last:2",
            "--models", "tiny", "--json", "--k", "3"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["n_test_users"] > 0 and row["n_cold_users"] == 0 and "ndcg@3" in row
    n_search = int((kinds == "search").sum())
    assert f"{n_search} skipped non-interaction events" in result.stderr


def test_cli_event_weights_for_odd_event_types(tmp_path, monkeypatch):
    import models.recommenders as registry
    from crosscart.cli import app

    monkeypatch.setattr(registry, "make_recommender", lambda name, **p: TinyPopularity())
    rows = [f"c{u},i{(u * 7 + j) % 11},{1_700_000_000 + 60 * (u * 10 + j)},{'click' if j % 2 else 'buy'}"
            for u in range(12) for j in range(6)]  # fmt: skip
    path = tmp_path / "log.csv"
    path.write_text("cust,item,t,kind\n" + "\n".join(rows) + "\n")
    base = ["evaluate", "recommender", "--data", f"events:{path}", "--user-col", "cust", "--item-col", "item",
            "--time-col", "t", "--event-col", "kind", "--split", "leave-last:1", "--models", "tiny",
            "--json"]  # fmt: skip
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 2 and "event types without a weight: ['buy', 'click']" in result.stderr
    result = CliRunner().invoke(app, [*base, "--weights", "click=1, buy=4"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_test_users"] == 12
    result = CliRunner().invoke(app, [*base, "--weights", "click"])
    assert result.exit_code == 2 and "TYPE=NUMBER" in result.output
