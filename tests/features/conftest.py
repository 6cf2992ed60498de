"""A small generated marketplace whose event log has three part files, shared by the out-of-core feature
job's tests here and its fault tests (tests/resilience/test_dask_worker_killed.py imports `market`)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.synth.generator import Scale, generate_marketplace

# three event part files, so the shuffle really moves shoppers' events between partitions
THREE_PARTS = Scale("three-parts", 600, 200, 40, 20, 9.0, 200)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """THREE_PARTS generated once per module (seed 5); tests read it and never write into it."""
    path = tmp_path_factory.mktemp("market")
    generate_marketplace(path, THREE_PARTS, seed=5)
    return path


def read_output(name: str, path) -> pd.DataFrame:
    """A feature job output in a canonical row order, for row-for-row comparisons."""
    frame = pd.read_parquet(path)
    if name == "interactions":
        return frame.sort_values(["shopper_id", "product_id"]).reset_index(drop=True)
    return frame.sort_index()
