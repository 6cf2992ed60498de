"""Fixtures for the training tests: small planted event files (a fresh MLflow registry per test is the
root conftest's `tracking_uri`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def planted_events(n_users: int = 80, n_late_users: int = 8, seed: int = 0) -> pd.DataFrame:
    """Users in 8 taste clusters of 5 items each (80% on-cluster), times increasing by row.

    The last `n_late_users` users only act at the very end, so a temporal split leaves them out of train:
    a model refitted on all data knows them, the train-split model does not.
    """
    rng = np.random.default_rng(seed)
    n = n_users * 25
    users = rng.integers(0, n_users, n)
    items = (users % 8) * 5 + rng.integers(0, 5, n)
    items = np.where(rng.random(n) < 0.2, rng.integers(0, 40, n), items)
    late_users = np.repeat(np.arange(n_users, n_users + n_late_users), 6)
    late_items = (late_users % 8) * 5 + np.tile(np.arange(6) % 5, n_late_users)
    frame = pd.DataFrame(
        {
            "shopper": [f"u{u}" for u in np.concatenate([users, late_users])],
            "product": [f"p{i}" for i in np.concatenate([items, late_items])],
        }
    )
    frame["when"] = 1_700_000_000 + np.arange(len(frame)) * 60
    return frame


@pytest.fixture(scope="session")
def events_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.csv"
    planted_events().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def training_data(events_file):
    from training.pipelines import load_training_data

    return load_training_data(
        f"events:{events_file}", "temporal:0.8", user_col="shopper", item_col="product", time_col="when"
    )
