"""A campaign model's input against the features this code computes (features.campaign_features
.encode_features): only a category value unseen here may be filled in (zeros)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.campaign_features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, encode_features


def _table() -> pd.DataFrame:
    row = {name: 1.0 for name in NUMERIC_FEATURES}
    row.update({"region": "Shanghai", "segment": "tech_fan", "channel": "site"})
    assert set(row) == set(NUMERIC_FEATURES) | set(CATEGORICAL_FEATURES)
    return pd.DataFrame([row, {**row, "region": "Guangdong"}], index=["U1", "U2"])


def test_a_category_unseen_here_is_zeros():
    columns = [*encode_features(_table()).columns, "region_Tibet"]
    X = encode_features(_table(), columns)
    assert list(X.columns) == columns and (X["region_Tibet"] == 0.0).all()


def test_a_feature_the_model_needs_and_this_code_no_longer_computes_is_refused():
    """A model trained with a feature since dropped had it scored as 0 for every shopper."""
    columns = [*encode_features(_table()).columns, "frequency_365d"]
    with pytest.raises(ValueError, match=r"no longer computed: \['frequency_365d'\]"):
        encode_features(_table(), columns)


def test_a_feature_the_model_was_not_trained_on_is_refused():
    columns = [c for c in encode_features(_table()).columns if c != NUMERIC_FEATURES[0]]
    with pytest.raises(ValueError, match="not trained on these features"):
        encode_features(_table(), columns)
