"""A search ranker file cut short (a copy that died half-way, a full disk) kept the API from starting,
with a bare unpickling error (`UnpicklingError`, or `struct.error` cut elsewhere) naming no file; it now
starts, ranks by BM25 (as when the file is missing) and logs which file could not be loaded and why."""

from __future__ import annotations

import joblib
import numpy as np

from features.search_features import FEATURES
from models.search.ranker import SearchRanker
from tests.resilience.conftest import fault_settings, seeded_factory


def test_a_truncated_ranker_is_reported_and_search_ranks_by_bm25(tmp_path, open_client, caplog):
    rng = np.random.default_rng(0)
    X = rng.random((200, len(FEATURES)))
    labels = (X[:, FEATURES.index("popularity")] > 0.5).astype(np.int64) * 2
    path = tmp_path / "ranker.joblib"
    joblib.dump(SearchRanker(n_estimators=5, min_child_samples=2).fit(X, labels, np.full(20, 10)), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short
    factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
    client = open_client(fault_settings(tmp_path, search_ranker_path=str(path)), factory)
    answer = client.get("/v1/search", params={"q": "p"})
    assert answer.status_code == 200 and answer.json()["model_version"] == "bm25"
    assert any(f"search ranker {path} cannot be loaded" in r.getMessage() for r in caplog.records)
